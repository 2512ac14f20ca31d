"""Shared fixtures: one local Ray for the session, a small digits task, a searched study."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
# Re-timing spans at least 5 s by default (a shared CPU's speed regimes last seconds); the
# suite runs ~60 searches, so its re-timings are rounds only. The 5 s default and the
# span itself are tested in tests/search/test_retime.py.
os.environ.setdefault("SLIMSEARCH_RETIME_SECONDS", "0")


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Teachers are cached per test session, never in the user's home."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["SLIMSEARCH_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def ray_session():
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def digits_task():
    """The digits task with a short fine-tune so trials take a fraction of a second."""
    from objectives.tasks import digits

    return digits(finetune_epochs=2, latency_batch_size=64)


@pytest.fixture(scope="session")
def searched(tmp_path_factory: pytest.TempPathFactory, ray_session, digits_task):
    """A finished 8-trial study: (storage URL, study name, front)."""
    from search import Search

    db = tmp_path_factory.mktemp("study") / "study.db"
    url = f"sqlite:///{db}"
    front = Search(
        digits_task,
        storage=url,
        study_name="shared",
        n_trials=8,
        max_concurrent_trials=2,
        max_accuracy_drop=0.05,
        seed=3,
    ).run()
    return url, "shared", front


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama (grouped-query attention) trained briefly, saved with its tokenizer."""
    from tests.objectives.tiny_decoder import tiny_decoder_dir

    return tiny_decoder_dir(tmp_path_factory.mktemp("tiny-llama"), "llama", steps=150)


@pytest.fixture
def searched_copy(searched, tmp_path: Path) -> tuple[str, str]:
    """A copy of the ``searched`` study's database that a test may change:
    (storage URL, study name). Copied with SQLite's backup API (consistent even while
    a connection is open)."""
    import sqlite3

    url, name, _ = searched
    target = tmp_path / "copy.db"
    src = sqlite3.connect(f"{Path(url.removeprefix('sqlite:///')).resolve().as_uri()}?mode=ro",
                          uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    return f"sqlite:///{target}", name
