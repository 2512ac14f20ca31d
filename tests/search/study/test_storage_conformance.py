"""What every storage backend must guarantee, run against SQLite, PostgreSQL and MariaDB.

One test class, parametrised over the backends through the ``url`` fixture (as Optuna
tests its storages). The server URLs come from ``SLIMSEARCH_TEST_POSTGRES_URL`` and
``SLIMSEARCH_TEST_MYSQL_URL``; outside CI a missing URL skips, in CI it fails.
"""

from __future__ import annotations

import subprocess
import threading
import time

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from search import StudyNotFoundError, open_storage
from search.results import study_status
from search.study import (
    MAX_RETRY,
    STALE_TRIAL,
    TRIAL_ERROR,
    TRIAL_ERROR_TYPE,
    TRIAL_OWNER,
    TRIAL_RETRY_OF,
    StudyInfo,
    create_or_join,
    end_run,
    load_existing,
    owner_identity,
    start_run,
    sweep_stale,
)
from tests.search._servers import MYSQL, POSTGRES, delete_study, server_url, unique_study

SPACE = {
    "prune_ratio": FloatDistribution(0.0, 0.9),
    "quant_bits": CategoricalDistribution([32, 8]),
}
META = {
    "task": {"name": "t", "fingerprint": "abc123", "spec": {"hidden": 64, "nested": [1, 2]}},
    "space": {"prune_ratio": {"low": 0.0, "high": 0.9}},
    "baseline": {"accuracy": 0.9753, "latency_ms": 0.0123, "size_bytes": 1_234_567},
    "max_accuracy_drop": None,
    "seed": 7,
    "version": "1.2.3",
}


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def url(request, tmp_path, monkeypatch):
    """The backend's URL, with a 1 s heartbeat and a 2 s grace period."""
    monkeypatch.setenv("SLIMSEARCH_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("SLIMSEARCH_GRACE_PERIOD", "2")
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'conformance.db'}"
    return server_url(POSTGRES if request.param == "postgresql" else MYSQL)


@pytest.fixture
def study_name(url):
    name = unique_study("conformance")
    yield name
    delete_study(url, name)


def _create(url: str, name: str) -> tuple[optuna.Study, bool]:
    return create_or_join(open_storage(url), name, **META)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


class TestStorageConformance:
    """The storage contract slimsearch relies on, for every backend."""

    def test_metadata_round_trips(self, url, study_name):
        study, created = _create(url, study_name)
        assert created
        info = StudyInfo.from_study(load_existing(open_storage(url), study_name, url), url)
        assert dict(info.task) == META["task"] and dict(info.baseline) == META["baseline"]
        assert info.max_accuracy_drop is None and info.seed == 7
        # joining an existing study neither rewrites it nor claims to have created it
        again, created = _create(url, study_name)
        assert not created and again.user_attrs == study.user_attrs

    def test_one_creator_among_concurrent_drivers(self, url, study_name):
        results: list[bool] = []
        errors: list[BaseException] = []

        def create() -> None:
            try:
                results.append(_create(url, study_name)[1])
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=create) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert sorted(results) == [False, False, True]

    def test_values_constraints_and_front(self, url, study_name):
        study, _ = _create(url, study_name)
        for acc, lat, size, drop in [
            (0.97, 0.02, 123_456_789, -0.01),
            (0.95, 0.01, 1_000_000, -0.01),
            (0.99, 0.05, 5_000_000, -0.01),
            (0.50, 0.001, 10, 0.4),  # infeasible: dominates on speed and size
        ]:
            trial = study.ask(SPACE)
            trial.set_constraint("accuracy_drop", drop)
            study.tell(trial, [acc, lat, size])
        stored = optuna.load_study(study_name=study_name, storage=url)
        values = sorted(tuple(t.values) for t in stored.trials)
        assert (0.97, 0.02, 123_456_789.0) in values  # exact, large sizes included
        assert {t.number for t in stored.best_trials} == {0, 1, 2}
        status = study_status(url, study_name)
        assert status.counts["COMPLETE"] == 4
        assert status.best["accuracy"] == (2, 0.99) and status.best["size_bytes"][0] == 1

    def test_sweep_fails_dead_and_stale_trials_only_and_requeues_once(self, url, study_name):
        study, _ = _create(url, study_name)
        storage = open_storage(url)  # the raw RDBStorage, as a search holds it
        me = owner_identity()
        elsewhere = {**me, "host": "another-machine"}

        def running(owner: dict | None, beat: bool) -> optuna.trial.Trial:
            trial = study.ask(SPACE)
            if owner is not None:
                storage.set_trial_system_attr(trial._trial_id, TRIAL_OWNER, owner)
            if beat:
                storage.record_heartbeat(trial._trial_id)
            return trial

        mine = running(me, beat=True)  # a live driver: this process
        remote = running(elsewhere, beat=True)  # judged by its heartbeat
        silent = running(None, beat=False)  # crashed before its first heartbeat
        dead = running({**me, "pid": _dead_pid()}, beat=True)  # owner gone: stale at once
        run = start_run()
        ended = running(owner_identity(run), beat=True)  # this process, a run that ended
        live_run = running(owner_identity(start_run()), beat=True)  # this process, running
        end_run(run)

        assert sorted(sweep_stale(storage, study)) == [dead.number, ended.number]
        time.sleep(3.5)  # past the 2 s grace period; ``mine`` is not renewed either
        assert sorted(sweep_stale(storage, study)) == sorted([remote.number, silent.number])
        assert sweep_stale(storage, study) == []

        trials = {t.number: t for t in study.get_trials()}
        assert trials[mine.number].state == TrialState.RUNNING
        assert trials[live_run.number].state == TrialState.RUNNING
        assert "has ended" in trials[ended.number].user_attrs[TRIAL_ERROR]
        for t in (dead, ended, remote, silent):
            frozen = trials[t.number]
            assert frozen.state == TrialState.FAIL
            assert frozen.user_attrs[TRIAL_ERROR_TYPE] == STALE_TRIAL
            assert frozen.user_attrs[TRIAL_ERROR]
        assert "gone" in trials[dead.number].user_attrs[TRIAL_ERROR]
        assert "no heartbeat" in trials[remote.number].user_attrs[TRIAL_ERROR]
        assert "never sent a heartbeat" in trials[silent.number].user_attrs[TRIAL_ERROR]

        waiting = study.get_trials(states=(TrialState.WAITING,))
        assert sorted(t.user_attrs[TRIAL_RETRY_OF] for t in waiting) == sorted(
            t.number for t in (dead, ended, remote, silent)
        )
        for w in waiting:
            origin = trials[w.user_attrs[TRIAL_RETRY_OF]]
            assert w.params == origin.params
            assert w.system_attrs["retry_history"] == [origin.number]
            assert "constraints:accuracy_drop" not in w.system_attrs

        # The next asks pick the re-queued configs up, and a retry is not retried again.
        retries = [study.ask(SPACE) for _ in waiting]
        assert sorted(tuple(sorted(r.params.items())) for r in retries) == sorted(
            tuple(sorted(w.params.items())) for w in waiting
        )
        gone = {**me, "pid": _dead_pid()}
        for r in retries:
            storage.set_trial_system_attr(r._trial_id, TRIAL_OWNER, gone)
        assert len(sweep_stale(storage, study)) == len(retries)
        assert MAX_RETRY == 1 and not study.get_trials(states=(TrialState.WAITING,))
        study.tell(mine, [0.9, 0.01, 1000])
        study.tell(live_run, [0.9, 0.01, 1000])

    def test_a_waiting_trial_is_taken_by_one_driver_only(self, url, study_name):
        _create(url, study_name)
        optuna.load_study(study_name=study_name, storage=url).enqueue_trial(
            {"prune_ratio": 0.5, "quant_bits": 8}
        )
        got: list[dict] = []

        def ask() -> None:
            study = optuna.load_study(study_name=study_name, storage=open_storage(url))
            got.append(study.ask(SPACE).params)

        threads = [threading.Thread(target=ask) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(p == {"prune_ratio": 0.5, "quant_bits": 8} for p in got) == 1
        study = optuna.load_study(study_name=study_name, storage=url)
        assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]

    def test_missing_study_names_the_existing_ones(self, url, study_name):
        _create(url, study_name)
        with pytest.raises(StudyNotFoundError) as err:
            load_existing(open_storage(url), study_name + "-typo", url)
        message = str(err.value)
        assert f"no study named '{study_name}-typo'" in message
        assert f"'{study_name}'" in message and "slimsearch run" in message


def test_sqlite_file_locked_by_another_writer_is_waited_for_not_refused(tmp_path):
    """A rollback-journal file under another connection's write lock is busy, not bad.

    SQLite answers ``PRAGMA journal_mode=WAL`` with "database is locked" at once (no busy
    timeout) while another connection writes; a driver starting then must wait, as CI
    saw when three drivers created one study together.
    """
    import sqlite3

    path = tmp_path / "busy.db"
    holder = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    release = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    release.start()
    started = time.monotonic()
    try:
        storage = open_storage(f"sqlite:///{path}")
    finally:
        release.join()
        holder.close()
    assert time.monotonic() - started >= 0.4  # it waited for the writer
    assert storage.get_all_studies() == []
    with sqlite3.connect(str(path)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
