"""What survives a crash: a SIGKILLed driver, a SIGKILLed Ray worker, trials that fail.

Everything here really breaks: the driver and the workers are killed with SIGKILL, the
trials raise, diverge to NaN, or fail to allocate memory.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn

from search import Search
from search._cli import _print_failures, main
from search.study import (
    STALE_TRIAL,
    TRIAL_ERROR,
    TRIAL_ERROR_TYPE,
    TRIAL_RETRY_OF,
    TRIAL_TRACEBACK,
)
from spaces import SearchSpace
from tests.search._driver import driver_task

ROOT = Path(__file__).resolve().parents[2]


def _key(t: optuna.trial.FrozenTrial) -> tuple:
    return tuple(sorted(t.params.items()))


def _driver_env() -> dict[str, str]:
    """The drivers share the session's teacher cache (``SLIMSEARCH_CACHE_DIR``)."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "SLIMSEARCH_HEARTBEAT_INTERVAL": "1",
        "SLIMSEARCH_GRACE_PERIOD": "4",
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
        "PYTHONPATH": str(ROOT),
    }


def start_driver(
    storage: str, study: str, n_trials: int, log: Path, env: dict[str, str], *extra: str
) -> subprocess.Popen:
    """Start ``tests/search/_driver.py`` in its own process group (so its Ray dies with it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.search._driver", storage, study, str(n_trials), str(log),
         *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def kill_driver(proc: subprocess.Popen) -> None:
    """SIGKILL the driver, then whatever of its process group outlived it (Ray agents)."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reap_group(proc)


def reap_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.stderr is not None:
        proc.stderr.close()


def _trials(url: str, study: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name=study, storage=url).get_trials(deepcopy=False)
    except KeyError:
        return []


def _count(url: str, study: str, state: TrialState) -> int:
    return sum(t.state == state for t in _trials(url, study))


def _wait(pred, proc: subprocess.Popen, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            if pred():
                return True
        except Exception:  # the database may be locked for a moment
            pass
        time.sleep(0.1)
    return False


_TWO_WORKERS = ("--workers", "2", "--cpus", "2")


@pytest.mark.slow
def test_sigkill_driver_five_times_then_resume(tmp_path):
    """30 trials with the driver SIGKILLed at random points 5 times, resumed after each."""
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    study, n_trials = "crash", 30
    log = tmp_path / "evaluated.jsonl"
    env = {**_driver_env(), "SLIMSEARCH_TEST_DRIVER_EPOCHS": "30"}  # ~0.2-1 s trials
    driver_task()  # train and cache the teacher once, outside the timed legs
    rng = random.Random(20261123)
    survivors: dict[int, tuple] = {}
    t0 = time.monotonic()
    left_running = 0
    for leg in range(5):
        proc = start_driver(url, study, n_trials, log, env, *_TWO_WORKERS)
        try:
            if leg == 0:  # anywhere: Ray start-up, baseline, study creation, first trials
                time.sleep(rng.uniform(4.0, 10.0))
            elif leg % 2:  # while a trial is in flight
                start = _count(url, study, TrialState.COMPLETE)
                assert _wait(
                    lambda start=start: _count(url, study, TrialState.COMPLETE) > start
                    and _count(url, study, TrialState.RUNNING) > 0,
                    proc, 120,
                ), f"leg {leg}: the driver ended or stalled: {proc.stderr.read()[-2000:]}"
                time.sleep(rng.uniform(0.0, 0.3))
            else:  # after a random number of further completions
                target = _count(url, study, TrialState.COMPLETE) + rng.randint(1, 6)
                assert _wait(
                    lambda target=target: _count(url, study, TrialState.COMPLETE) >= target,
                    proc, 120,
                ), f"leg {leg}: the driver ended or stalled: {proc.stderr.read()[-2000:]}"
                time.sleep(rng.uniform(0.0, 1.0))
            survivors.update(
                (t.number, (_key(t), tuple(t.values)))
                for t in _trials(url, study)
                if t.state == TrialState.COMPLETE
            )
            kill_driver(proc)
        finally:
            if proc.poll() is None:
                kill_driver(proc)
        left_running += _count(url, study, TrialState.RUNNING)
        print(f"leg {leg}: killed at {time.monotonic() - t0:.1f} s, "
              f"{_count(url, study, TrialState.COMPLETE)} complete")

    proc = start_driver(url, study, n_trials, log, env, *_TWO_WORKERS)
    try:
        _, err = proc.communicate(timeout=400)
    finally:
        reap_group(proc)
    assert proc.returncode == 0, err[-3000:]

    trials = _trials(url, study)
    states = Counter(t.state for t in trials)
    assert states[TrialState.COMPLETE] == n_trials
    assert states[TrialState.RUNNING] == 0 and states[TrialState.WAITING] == 0
    by_number = {t.number: t for t in trials}
    for number, (key, values) in survivors.items():
        t = by_number[number]
        assert t.state == TrialState.COMPLETE and _key(t) == key and tuple(t.values) == values

    # Trials a killed driver left RUNNING were failed with a reason and re-queued once.
    stale = [t for t in trials if t.user_attrs.get(TRIAL_ERROR_TYPE) == STALE_TRIAL]
    assert left_running > 0, "no kill landed while a trial ran; the sweep went untested"
    assert len(stale) >= left_running
    retries = {t.user_attrs[TRIAL_RETRY_OF]: t for t in trials if TRIAL_RETRY_OF in t.user_attrs}
    for t in stale:
        # "gone" normally; "never sent a heartbeat" if the kill fell between ``ask`` and
        # the owner record, so the trial was judged by its age.
        reason = t.user_attrs[TRIAL_ERROR]
        assert t.state == TrialState.FAIL and ("gone" in reason or "never sent" in reason)
        if TRIAL_RETRY_OF in t.user_attrs:  # a retry that was killed too: not retried again
            assert t.number not in retries
            continue
        # the same config; a kill in the middle of ``ask`` leaves part of it to sample
        assert t.number in retries and set(_key(t)) <= set(_key(retries[t.number]))
        assert retries[t.number].system_attrs["retry_history"] == [t.number]

    # No config ran twice, in the study or in the workers, except the re-queued ones.
    requeued = {_key(retries[t.number]) for t in stale if t.number in retries}
    counts = Counter(_key(t) for t in trials if t.params)
    assert {k for k, n in counts.items() if n > 1} <= requeued
    assert all(n <= 2 for n in counts.values())
    evaluated = Counter(
        tuple(sorted(json.loads(line)["config"].items()))
        for line in log.read_text().splitlines()
    )
    assert {k for k, n in evaluated.items() if n > 1} <= requeued


class KillsItsWorker(nn.Module):
    """A small MLP whose training forward SIGKILLs its own process while armed.

    With ``once`` it first leaves a marker file, so the retried attempt trains normally.
    """

    def __init__(self, marker: str = "", once: bool = True) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
        self.marker = marker
        self.once = once

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.marker and self.training and torch.is_grad_enabled():
            marker = Path(self.marker)
            if not marker.exists():
                if self.once:
                    marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
        return self.net(x.flatten(1))


class FailsInTraining(nn.Module):
    """A small MLP whose training forward fails in a chosen, real way."""

    def __init__(self, how: str = "") -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 4))
        self.how = how

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x.flatten(1))
        if self.how and self.training and torch.is_grad_enabled():
            if self.how == "nan":
                out = out * torch.log(-torch.ones_like(out))  # log(-1) = NaN
            elif self.how == "oom":
                bytearray(1 << 62)  # a real allocation the OS refuses: MemoryError
            elif self.how == "torch-oom":
                torch.empty(1 << 60)  # the CPU allocator refuses: RuntimeError
            elif self.how == "raise":
                raise ValueError(f"cannot train on inputs of shape {tuple(x.shape)}")
        return out


def _task(model: nn.Module, name: str):
    from tests.objectives.models import image_task

    return image_task(model, name=name, epochs=2)


_SPACE = SearchSpace.default().fix("quant_bits", 32).fix("prune_ratio", 0.25)


def test_killed_worker_is_retried_and_completes(tmp_path, ray_session):
    model = KillsItsWorker()
    task = _task(model, "kills-once")
    model.marker = str(tmp_path / "killed-once")
    url = f"sqlite:///{tmp_path / 'w.db'}"
    Search(task, _SPACE, storage=url, study_name="w", n_trials=1).run()
    assert (tmp_path / "killed-once").exists(), "the worker was never killed"
    trials = _trials(url, "w")
    assert [t.state for t in trials] == [TrialState.COMPLETE]


def test_worker_killed_every_attempt_is_a_fail_with_reason(tmp_path, ray_session, capsys):
    model = KillsItsWorker(once=False)
    task = _task(model, "kills-always")
    model.marker = str(tmp_path / "never-written")
    url = f"sqlite:///{tmp_path / 'k.db'}"
    Search(task, _SPACE, storage=url, study_name="k", n_trials=1).run()
    trials = _trials(url, "k")
    assert [t.state for t in trials] == [TrialState.FAIL]
    assert trials[0].user_attrs[TRIAL_ERROR_TYPE] == "WorkerError"
    assert "died" in trials[0].user_attrs[TRIAL_ERROR]
    assert main(["status", "--storage", url, "--study", "k"]) == 0
    assert "trial 0: WorkerError" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("how", "error_type", "needle"),
    [
        ("nan", "TrialFailed", "loss became nan"),
        ("oom", "MemoryError", "out of memory (lower batch_size"),
        ("torch-oom", "RuntimeError", "out of memory (lower batch_size"),
        ("raise", "ValueError", "cannot train on inputs of shape"),
    ],
)
def test_failing_trial_is_recorded_and_search_goes_on(
    tmp_path, ray_session, capsys, how, error_type, needle
):
    """A failing trial is FAIL with its error; the other trials of the study still complete."""
    model = FailsInTraining()
    task = _task(model, f"fails-{how}")
    url = f"sqlite:///{tmp_path / 'f.db'}"
    ok = Search(task, _SPACE, storage=url, study_name="f", n_trials=1).run()
    assert len(ok.trials) == 1
    model.how = how  # the same task (same fingerprint) now fails in training
    search = Search(task, storage=url, study_name="f", n_trials=2)
    search.run()
    trials = _trials(url, "f")
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert trials[0].state == TrialState.COMPLETE
    assert failed and not [t for t in trials if t.state == TrialState.RUNNING]
    for t in failed:
        assert t.user_attrs[TRIAL_ERROR_TYPE] == error_type
        assert needle in t.user_attrs[TRIAL_ERROR]
        # the worker's traceback crosses Ray in the TrialReport and is stored
        trace = t.user_attrs[TRIAL_TRACEBACK]
        assert "run_trial" in trace and error_type in trace.strip().splitlines()[-1]
        if how != "nan":  # raised in the model's forward (NaN is caught by the fine-tune)
            assert "test_crash.py" in trace and "in forward" in trace
    assert main(["status", "--storage", url, "--study", "f"]) == 0
    out = capsys.readouterr().out
    assert f"trial {failed[0].number}: {error_type}" in out and needle in out
    assert "1 complete" in out and f"{len(failed)} fail" in out
    assert "Traceback" not in out and "slimsearch status -v" in out
    assert main(["status", "--storage", url, "--study", "f", "-v"]) == 0
    out = capsys.readouterr().out
    last = failed[0].user_attrs[TRIAL_TRACEBACK].strip().splitlines()[-1]
    assert "run_trial" in out and f"      {last}" in out  # the traceback, indented
    _print_failures(search)  # what `slimsearch run` prints after its front
    out = capsys.readouterr().out
    assert f"trial {failed[0].number}: {error_type}" in out and "slimsearch status" in out
