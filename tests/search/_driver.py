"""A search driver run as a separate process by the crash and concurrency tests.

Usage: ``python -m tests.search._driver STORAGE STUDY N_TRIALS LOG [--workers N] [--seed S]``

Runs ``Search`` on a small digits task with its own local Ray. Every trial Ray Tune
finishes is appended to ``LOG`` (one JSON line: this process's PID, the config, the
reported accuracy or error), so a test can compare what the drivers evaluated with what
the study holds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from ray.tune import Callback


class TrialLog(Callback):
    """Appends each finished Tune trial to a JSON-lines file."""

    def __init__(self, path: str) -> None:
        self._path = path

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, ok=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, ok=False)

    def _write(self, trial: Any, *, ok: bool) -> None:
        result = trial.last_result or {}
        line = {
            "pid": os.getpid(),
            "config": dict(trial.config),
            "ok": ok and not result.get("error"),
            "accuracy": result.get("accuracy"),
            "error": result.get("error"),
        }
        with open(self._path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def driver_task():
    """The task every driver searches: small and fast — the tests are about what survives.

    Calling it once in the test process trains and caches the teacher for the drivers.
    """
    from objectives.tasks import digits

    # The kill test lengthens trials (SLIMSEARCH_TEST_DRIVER_EPOCHS) so that a fast machine
    # cannot finish the whole study before its kills land.
    epochs = int(os.environ.get("SLIMSEARCH_TEST_DRIVER_EPOCHS", "1"))
    return digits(hidden=64, finetune_epochs=epochs, latency_batch_size=32)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("storage")
    parser.add_argument("study")
    parser.add_argument("n_trials", type=int)
    parser.add_argument("log")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpus", type=int, default=1)
    args = parser.parse_args(argv)

    import ray

    from search import Search
    from spaces import SearchSpace

    ray.init(
        address="local",  # never join another Ray found on this machine
        num_cpus=args.cpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    task = driver_task()
    space = SearchSpace.default().narrow("quant_bits", choices=[32, 8])
    Search(
        task,
        space,
        storage=args.storage,
        study_name=args.study,
        n_trials=args.n_trials,
        max_concurrent_trials=args.workers,
        max_accuracy_drop=None,
        seed=args.seed,
        callbacks=[TrialLog(args.log)],
    ).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
