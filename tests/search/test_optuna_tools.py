"""Optuna's own tools read a slimsearch study: it is a plain multi-objective Optuna study."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

OPTUNA = str(Path(sys.executable).parent / "optuna")


def _optuna(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([OPTUNA, *args], capture_output=True, text=True, timeout=300)


def test_optuna_best_trials_is_our_front(searched):
    url, name, front = searched
    proc = _optuna("best-trials", "--study-name", name, "--storage", url, "-f", "json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert sorted(r["number"] for r in rows) == sorted(c.trial for c in front)
    for r in rows:
        c = front.get(r["number"])
        # the study names its objectives, so Optuna prints them by name
        assert r["values"] == {
            "accuracy": c.accuracy, "latency_ms": c.latency_ms, "size_bytes": c.size_bytes
        }
        assert r["state"] == "COMPLETE"


def test_optuna_lists_the_study_with_its_directions(searched):
    url, name, front = searched
    proc = _optuna("studies", "--storage", url, "-f", "json")
    assert proc.returncode == 0, proc.stderr
    study = next(s for s in json.loads(proc.stdout) if s["name"] == name)
    assert study["direction"] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    assert study["n_trials"] >= len(front.trials)
