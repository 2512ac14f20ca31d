"""Live progress and logging: what a user sees while a study runs."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys

import optuna
import pytest
from optuna.trial import TrialState
from rich.console import Console

from search import Search, SearchArgumentError, open_storage
from search.view import Progress, take_snapshot


def test_snapshot_matches_the_study(searched):
    url, name, front = searched
    study = optuna.load_study(study_name=name, storage=url)
    snap = take_snapshot(study, target=8, done_at_start=4, elapsed_s=20.0)
    states = [t.state for t in study.trials]
    assert snap.done == states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED)
    assert states.count(TrialState.COMPLETE) == len(front.trials)
    assert snap.failed == states.count(TrialState.FAIL)
    assert snap.stopped == states.count(TrialState.PRUNED)
    assert snap.running == 0
    assert snap.front_size == len(study.best_trials) == len(front)
    feasible = [c for c in front.trials if c.trial not in front.infeasible]
    assert snap.best["accuracy"].value == max(c.accuracy for c in feasible)
    assert snap.best["latency_ms"].value == min(c.latency_ms for c in feasible)
    assert snap.best["size_bytes"].value == min(c.size_bytes for c in feasible)
    assert snap.baseline["accuracy"] == front.baseline["accuracy"]
    # 4 trials done in 20 s: the remaining 8 - done trials take 5 s each.
    assert snap.eta_s == pytest.approx(max(0, 8 - snap.done) * 5.0)
    line = snap.line()
    assert f"trials {snap.done}/8 done" in line and "front" in line and "\n" not in line


def test_live_display_then_log_lines_on_resume(tmp_path, ray_session, digits_task, caplog):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=110, color_system=None)
    handler = logging.StreamHandler(sys.stderr)  # as the CLI's logging set-up has
    logging.getLogger().addHandler(handler)
    try:
        with Progress(open_storage(url), "p", 3, live=True, console=console, interval_s=0.2):
            # A log record during the display is printed above the panel, not through it.
            logging.getLogger("search.test").warning("a warning while the panel is shown")
            Search(digits_task, storage=url, study_name="p", n_trials=3, seed=1,
                   progress=False).run()
    finally:
        logging.getLogger().removeHandler(handler)
    assert handler.stream is sys.stderr  # restored
    out = buf.getvalue()
    assert "a warning while the panel is shown" in out
    # The panel was drawn before the study existed and redrawn until the end.
    assert "measuring" in out
    assert "3/3 done" in out
    assert re.search(r"best accuracy\s+0\.\d{4}", out)
    assert re.search(r"Pareto front\s+\d+ trial", out)

    # Off a terminal (pytest captures stderr) the default is log lines, not a display.
    caplog.set_level(logging.INFO, logger="search.progress")
    Search(digits_task, storage=url, study_name="p", n_trials=5, seed=1).run()
    lines = [r.getMessage() for r in caplog.records if r.name == "search.progress"]
    assert lines, "no progress log line"
    assert lines[-1].startswith("trials 5/5 done (")
    assert "0 running, 0 failed" in lines[-1]
    assert "best accuracy" in lines[-1] and "eta 0:00:00" in lines[-1]


def test_progress_argument_is_checked(digits_task, tmp_path):
    with pytest.raises(SearchArgumentError, match="progress must be True, False or None"):
        Search(digits_task, storage=f"sqlite:///{tmp_path / 'x.db'}", progress="yes")


@pytest.mark.slow
def test_cli_is_quiet_by_default_and_verbose_on_request(tmp_path):
    url = f"sqlite:///{tmp_path / 'q.db'}"
    # RAY_ADDRESS=local: a Ray of its own, not another cluster found on this machine.
    env = {**os.environ, "PYTHONWARNINGS": "default", "RAY_ADDRESS": "local"}

    def cli(trials: int, *flags: str, study: str = "q") -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "search", *flags, "run", "--task", "digits", "--storage",
             url, "--study", study, "--trials", str(trials), "--json"],
            capture_output=True, text=True, timeout=600, env=env,
        )

    quiet = cli(2)
    assert quiet.returncode == 0, quiet.stderr
    err = quiet.stderr.strip().splitlines()
    # Only slimsearch's own lines — progress, and its one-time notes about this hardware
    # (a precision slower than fp32 here) and about a validation split too small for the
    # promise (docs/accuracy.md) — no Ray set-up chatter, no Optuna trial lines, no
    # library deprecation warnings.
    assert err and all(
        line.startswith(("INFO search.progress: trials ", "WARNING search._search: quant_bits=",
                         "WARNING search._search: validation has "))
        for line in err
    ), err
    assert err[-1].startswith("INFO search.progress: trials 2/2 done")

    loud = cli(3, "-vv", study="q-loud")  # a new study: Optuna says it created it
    assert loud.returncode == 0, loud.stderr
    assert "[I " in loud.stderr and "A new study created" in loud.stderr  # Optuna's INFO
    assert "INFO search.run._searcher: trial 2 finished: accuracy " in loud.stderr  # ours
    assert "Started a local Ray instance" in loud.stderr  # Ray's
    assert "search.progress: trials 3/3 done" in loud.stderr
