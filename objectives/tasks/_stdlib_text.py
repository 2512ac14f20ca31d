"""``stdlib_text``: a real-text classification task that ships with the interpreter.

``minilm_text`` is generated from a grammar. This task is written by people: the first
paragraph of every docstring (module, class, function) in ten packages of the running
interpreter's standard library, labelled by the package it documents — ``asyncio``,
``email``, ``http``, ``idlelib``, ``importlib``, ``logging``, ``multiprocessing``,
``tkinter``, ``unittest``, ``xml`` by default (all present in CPython 3.9–3.13). 2,757
rows on CPython 3.11, classes from 122 (``http``) to 620 (``tkinter``) rows;
``hf_text_task`` splits them 50/20/15/15 into train/validation/test/confirmation, so the
validation split is small (551 rows), as a user's would be: the case issue #16's
"within N points" has to survive.

The data depends on the interpreter's version (its docstrings); the task fingerprint
hashes the rows, so a cached teacher or a stored study is never reused across versions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from objectives._errors import TaskError
from objectives.tasks._causal_lm import stdlib_docstrings
from objectives.tasks._text import MINILM_TEACHER, TextTask, hf_text_task, minilm_model_dir

STDLIB_PACKAGES = ("asyncio", "email", "http", "idlelib", "importlib", "logging",
                   "multiprocessing", "tkinter", "unittest", "xml")
"""The default classes: the ten largest packages of CPython 3.11's standard library
whose docstrings exist in every CPython since 3.9 (``distutils`` is larger but gone in
3.12)."""

MIN_ROWS_PER_PACKAGE = 50


def stdlib_doc_rows(packages: Sequence[str] = STDLIB_PACKAGES,
                    ) -> tuple[list[str], list[str]]:
    """``(texts, labels)``: the first paragraph of each docstring in ``packages``, with
    whitespace collapsed, labelled by package; in the interpreter's path order.

    A text that occurs in two packages (``"Return the name."``) is dropped from both, so
    no row has two labels; a text repeated within one package is kept once.

    Raises:
        TaskError: fewer than 2 packages, a repeated one, or a package with fewer than
            ``MIN_ROWS_PER_PACKAGE`` docstrings in this interpreter.
    """
    wanted = list(packages)
    if len(wanted) < 2 or len(set(wanted)) != len(wanted):
        raise TaskError(f"packages must name at least 2 distinct standard-library packages, "
                        f"got {wanted!r}")
    seen: dict[str, set[str]] = {}
    order: list[str] = []
    for module, doc in stdlib_docstrings():
        package = module.split("/", 1)[0] if "/" in module else None
        if package not in wanted:
            continue
        text = " ".join(re.split(r"\n\s*\n", doc.strip(), maxsplit=1)[0].split())
        if text not in seen:
            seen[text] = set()
            order.append(text)
        seen[text].add(package)
    texts = [t for t in order if len(seen[t]) == 1]
    labels = [next(iter(seen[t])) for t in texts]
    counts = {p: labels.count(p) for p in wanted}
    few = {p: n for p, n in counts.items() if n < MIN_ROWS_PER_PACKAGE}
    if few:
        raise TaskError(
            f"packages {few!r} have fewer than {MIN_ROWS_PER_PACKAGE} docstrings in this "
            f"interpreter's standard library; choose others (default: {STDLIB_PACKAGES})"
        )
    return texts, labels


def stdlib_text(
    *,
    packages: Sequence[str] = STDLIB_PACKAGES,
    seed: int = 0,
    split_fractions: tuple[float, float, float] = (0.2, 0.15, 0.15),
    max_length: int = 32,
    teacher_epochs: int = 5,
    finetune_epochs: int = 2,
    latency_batch_size: int = 32,
    threads: int = 1,
    model_dir: str | Path | None = None,
    cache: str | Path | None = None,
) -> TextTask:
    """all-MiniLM-L6-v2 fine-tuned to tell which standard-library package a docstring
    documents (real text; see the module docstring).

    Args:
        packages: The classes (top-level package directories of the standard library).
        seed: Seeds the split and the teacher fine-tune.
        split_fractions: (validation, test, confirmation) shares; training keeps the rest.
        max_length: Tokens per row (a docstring's first paragraph is cut there).
        teacher_epochs: Teacher fine-tune epochs (once, cached).
        finetune_epochs: Distillation epochs per trial.
        latency_batch_size: Rows per forward pass when timing.
        threads: Intra-op threads per trial.
        model_dir: A BERT-style model directory instead of all-MiniLM-L6-v2 (its
            tokenizer beside it).
        cache: Cache directory (default ``$SLIMSEARCH_CACHE_DIR`` or ``~/.cache/slimsearch``).

    Raises:
        TaskError: as ``stdlib_doc_rows`` and ``hf_text_task``.
    """
    texts, labels = stdlib_doc_rows(packages)
    spec = {
        "packages": list(packages),
        "seed": seed,
        "split_fractions": list(split_fractions),
        "max_length": max_length,
        "teacher_epochs": teacher_epochs,
        "finetune_epochs": finetune_epochs,
        "latency_batch_size": latency_batch_size,
        "threads": threads,
        **({"model_dir": str(model_dir)} if model_dir is not None else {}),
    }
    return hf_text_task(
        model_dir if model_dir is not None else minilm_model_dir(),
        (texts, labels),
        name="stdlib_text",
        label_names=sorted(packages),
        max_length=max_length,
        split_fractions=tuple(split_fractions),
        seed=seed,
        teacher_epochs=teacher_epochs,
        **MINILM_TEACHER,
        finetune_epochs=finetune_epochs,
        latency_batch_size=latency_batch_size,
        threads=threads,
        cache=cache,
        spec=spec,
    )
