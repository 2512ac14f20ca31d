"""Two driver processes, each with its own Ray, search one study on a real database."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from optuna.trial import TrialState

from tests.search._driver import driver_task
from tests.search._servers import POSTGRES, delete_study, server_url, unique_study
from tests.search.test_crash import _driver_env, _trials, reap_group, start_driver

N_TRIALS = 6
_LOCK_ERRORS = re.compile(
    r"database is locked|OperationalError|deadlock|could not serialize|Traceback", re.I
)


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shared.db'}"
        return
    yield server_url(POSTGRES)


@pytest.mark.slow
def test_two_drivers_share_one_study(shared_url, tmp_path):
    study = unique_study("two-drivers")
    driver_task()  # train and cache the teacher before the drivers start
    env = _driver_env()
    logs = [tmp_path / f"driver{i}.jsonl" for i in range(2)]
    procs = [start_driver(shared_url, study, N_TRIALS, log, env) for log in logs]
    try:
        errors = []
        for proc in procs:
            try:
                _, err = proc.communicate(timeout=300)
            finally:
                reap_group(proc)
            errors.append(err)
        for proc, err in zip(procs, errors, strict=True):
            assert proc.returncode == 0, err[-3000:]
            assert not _LOCK_ERRORS.search(err), err[-3000:]

        trials = _trials(shared_url, study)
        states = Counter(t.state for t in trials)
        # Both stop at the shared budget; a driver may overshoot it by the one trial it
        # asked for in the same instant as the other's last one.
        assert N_TRIALS <= states[TrialState.COMPLETE] <= N_TRIALS + 1
        assert states[TrialState.RUNNING] == 0 and states[TrialState.WAITING] == 0
        assert states[TrialState.FAIL] == 0, [t.user_attrs for t in trials]  # none swept
        assert sorted(t.number for t in trials) == list(range(len(trials)))

        # What the drivers evaluated is exactly what the study holds: none lost, none twice.
        lines = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
        assert all(line["ok"] for line in lines)
        assert {line["pid"] for line in lines} == {p.pid for p in procs}, "one driver idled"
        evaluated = Counter(tuple(sorted(line["config"].items())) for line in lines)
        stored = Counter(
            tuple(sorted(t.params.items())) for t in trials if t.state == TrialState.COMPLETE
        )
        assert evaluated == stored
        assert max(stored.values()) == 1, "two drivers evaluated the same config"
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            reap_group(proc)
        delete_study(shared_url, study)
