"""``stdlib_text``: real docstrings of the standard library, labelled by package."""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging.handlers

import pytest

from objectives import TaskError
from objectives.tasks import STDLIB_PACKAGES, get_task, stdlib_doc_rows, stdlib_text
from tests.objectives.tiny_bert import tiny_bert_dir


def _first_paragraph(obj: object) -> str:
    return " ".join(inspect.getdoc(obj).split("\n\n")[0].split())


def test_rows_are_the_packages_real_docstrings_each_with_one_label():
    texts, labels = stdlib_doc_rows()
    assert len(texts) == len(labels) == len(set(texts))  # no row twice, none with two labels
    counts = collections.Counter(labels)
    assert set(counts) == set(STDLIB_PACKAGES)
    assert min(counts.values()) >= 50 and len(texts) > 2000
    rows = dict(zip(texts, labels, strict=True))
    # Read back from the live objects: the rows are the source's own words.
    assert rows[_first_paragraph(asyncio.wait_for)] == "asyncio"
    assert rows[_first_paragraph(logging.handlers.RotatingFileHandler)] == "logging"
    assert not any(t.startswith(("\n", " ")) or "\n" in t for t in texts)


def test_a_text_two_packages_share_is_dropped_from_both():
    import email.message
    import wsgiref.headers

    # email and wsgiref document their headers' __len__ with the same sentence.
    shared = _first_paragraph(email.message.Message.__len__)
    assert shared == _first_paragraph(wsgiref.headers.Headers.__len__)
    texts, labels = stdlib_doc_rows(("email", "wsgiref"))
    assert shared not in texts
    assert set(labels) == {"email", "wsgiref"}
    assert shared in stdlib_doc_rows(("asyncio", "email"))[0]  # email's alone otherwise


@pytest.mark.parametrize("packages, needle", [
    (("asyncio",), "at least 2"),
    (("asyncio", "asyncio"), "at least 2"),
    (("asyncio", "no_such_package"), "no_such_package"),
])
def test_bad_packages_are_refused_naming_them(packages, needle):
    with pytest.raises(TaskError, match=needle):
        stdlib_doc_rows(packages)


def test_task_splits_with_confirmation_rows_and_rebuilds_from_its_spec(tmp_path):
    model = tiny_bert_dir(tmp_path / "bert", num_labels=3)
    packages = ("asyncio", "email", "logging")
    task = stdlib_text(packages=packages, model_dir=model, teacher_epochs=1, max_length=16,
                       latency_batch_size=4, cache=tmp_path / "cache")
    n = len(stdlib_doc_rows(packages)[0])
    assert task.confirm is not None
    sizes = [len(task.val), len(task.test), len(task.confirm)]
    assert sizes == [round(0.2 * n), round(0.15 * n), round(0.15 * n)]
    assert len(task.train) == n - sum(sizes)
    assert task.label_names == tuple(sorted(packages))
    again = get_task("stdlib_text", **task.spec)
    assert again.fingerprint == task.fingerprint
