"""The Optuna study behind a search: its metadata, its objectives, stale-trial sweeps.

A slimsearch study is a plain multi-objective Optuna study — maximize ``accuracy``,
minimize ``latency_ms``, minimize ``size_bytes`` — whose user attributes record what it
was created for. ``optuna.load_study(...).best_trials`` is the Pareto front, with trials
that break the accuracy-drop constraint excluded through Optuna's constraint records.
"""

from __future__ import annotations

import math
import os
import socket
import time
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from search._errors import (
    NOT_OUR_STUDY,
    STUDY_NOT_FOUND,
    StudyMismatchError,
    StudyNotFoundError,
)
from search._storage import HEARTBEAT_INTERVAL_S, redact

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

METRICS = ("accuracy", "latency_ms", "size_bytes")
MODES = ("max", "min", "min")
DIRECTIONS = ("maximize", "minimize", "minimize")
CONSTRAINT = "accuracy_drop"

# Study user-attribute keys.
ATTR_VERSION = "slimsearch_version"
ATTR_TASK = "slimsearch_task"
ATTR_SPACE = "slimsearch_space"
ATTR_BASELINE = "slimsearch_baseline"
ATTR_MAX_DROP = "slimsearch_max_accuracy_drop"
ATTR_SEED = "slimsearch_seed"

# Trial user-attribute keys.
TRIAL_ERROR = "error"
TRIAL_ERROR_TYPE = "error_type"
TRIAL_TEST_ACCURACY = "test_accuracy"
TRIAL_COMPUTE = "compute_s"
TRIAL_RETRY_OF = "retry_of"
TRIAL_OWNER = "slimsearch_owner"  # system attribute: see ``owner_identity``
STALE_TRIAL = "StaleTrial"
MAX_RETRY = 1


@dataclass(frozen=True)
class StudyInfo:
    """What a slimsearch study was created for.

    Attributes:
        name: The Optuna study name.
        task: ``{"name", "fingerprint", "spec"}`` of the task.
        space: The search space in its mapping form.
        baseline: The teacher's metrics, measured like a trial.
        max_accuracy_drop: The constraint (absolute accuracy points as a fraction), or None.
        seed: The training seed every trial used.
    """

    name: str
    task: Mapping[str, Any]
    space: Mapping[str, Any]
    baseline: Mapping[str, float]
    max_accuracy_drop: float | None
    seed: int

    @classmethod
    def from_study(cls, study: optuna.Study, storage_url: str) -> StudyInfo:
        attrs = study.user_attrs
        if ATTR_VERSION not in attrs:
            raise StudyMismatchError(
                NOT_OUR_STUDY.format(name=study.study_name, storage=redact(storage_url))
            )
        return cls(
            name=study.study_name,
            task=attrs[ATTR_TASK],
            space=attrs[ATTR_SPACE],
            baseline=attrs[ATTR_BASELINE],
            max_accuracy_drop=attrs.get(ATTR_MAX_DROP),
            seed=int(attrs.get(ATTR_SEED, 0)),
        )


def study_names(storage: BaseStorage) -> list[str]:
    """Names of every study in ``storage``."""
    return [s.study_name for s in storage.get_all_studies()]


def find_study(storage: BaseStorage, name: str) -> optuna.Study | None:
    """The study ``name`` in ``storage``, or None."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def load_existing(storage: BaseStorage, name: str, storage_url: str) -> optuna.Study:
    """Load ``name`` from ``storage``; a missing study is a clear error."""
    study = find_study(storage, name)
    if study is None:
        existing = ", ".join(repr(n) for n in study_names(storage)) or "none"
        raise StudyNotFoundError(
            STUDY_NOT_FOUND.format(name=name, storage=redact(storage_url), existing=existing)
        )
    return study


def create_or_join(
    storage: BaseStorage,
    name: str,
    *,
    task: Mapping[str, Any],
    space: Mapping[str, Any],
    baseline: Mapping[str, float],
    max_accuracy_drop: float | None,
    seed: int,
    version: str,
    wait_s: float = 10.0,
) -> tuple[optuna.Study, bool]:
    """Create the study with its metadata, or join the one another process creates.

    Of several processes creating the same study at once exactly one wins (the
    database's unique study name decides) and writes the metadata — at once, the
    baseline is measured before — the version attribute last; the others wait up to
    ``wait_s`` seconds for it and join. A study without the
    version attribute after that is incomplete (a crash between creation and metadata)
    and is repaired when it has no trials.

    Returns:
        ``(study, created)``: ``created`` is True for the process that wrote the metadata
        (only it should enqueue first trials); a joining caller must check the stored
        metadata against its own task and space.
    """
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, directions=list(DIRECTIONS)
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        deadline = time.monotonic() + wait_s
        while ATTR_VERSION not in study.user_attrs and time.monotonic() < deadline:
            time.sleep(0.2)
        if ATTR_VERSION in study.user_attrs:
            return study, False
    if study.get_trials(deepcopy=False):
        raise StudyMismatchError(
            f"study {name!r} has trials but no slimsearch metadata; use another study name"
        )
    with warnings.catch_warnings():  # named objectives in Optuna's CLI and dashboard
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(METRICS))
    study.set_user_attr(ATTR_TASK, dict(task))
    study.set_user_attr(ATTR_SPACE, dict(space))
    study.set_user_attr(ATTR_BASELINE, dict(baseline))
    study.set_user_attr(ATTR_MAX_DROP, max_accuracy_drop)
    study.set_user_attr(ATTR_SEED, seed)
    study.set_user_attr(ATTR_VERSION, version)
    return study, True


def accuracy_drop_constraint(
    accuracy: float, baseline_accuracy: float, max_drop: float | None
) -> float:
    """Optuna constraint value: ``<= 0`` iff ``accuracy >= baseline - max_drop``."""
    if max_drop is None:
        return -1.0
    if not math.isfinite(accuracy):
        return 1.0
    return float(baseline_accuracy - accuracy - max_drop)


def complete_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE trials, in trial-number order."""
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def finished_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Trials that count toward ``n_trials``: COMPLETE, and PRUNED (stopped early)."""
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


_LIVE_RUNS: set[str] = set()


def start_run() -> str:
    """Register a search run of this process; its token marks the trials it owns."""
    token = uuid.uuid4().hex
    _LIVE_RUNS.add(token)
    return token


def end_run(token: str) -> None:
    """The run ``token`` has ended: its trials still RUNNING are stale from now on."""
    _LIVE_RUNS.discard(token)


def owner_identity(run: str | None = None) -> dict[str, Any]:
    """Who runs a trial: host, PID namespace, PID, process start time and run token.

    Stored on every trial a search starts (system attribute ``slimsearch_owner``) so a
    sweep on the same machine can tell a dead driver — or, in the same process, a run
    that has ended — from a live one without waiting for its heartbeat to go stale.
    """
    pid = os.getpid()
    return {"host": socket.gethostname(), "pidns": _pid_namespace(), "pid": pid,
            "start": _process_start(pid), "run": run}


def owner_alive(owner: Mapping[str, Any] | None) -> bool | None:
    """Whether the process in ``owner`` still runs; None when this machine cannot tell.

    Only a process on this host, in this PID namespace, whose start time is readable
    can be judged; anything else (another machine, no ``/proc``) is left to heartbeats.
    """
    if not isinstance(owner, Mapping) or owner.get("start") is None:
        return None
    if owner.get("host") != socket.gethostname() or owner.get("pidns") != _pid_namespace():
        return None
    if _pid_namespace() is None:
        return None
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return None
    alive = _process_start(pid) == owner["start"]
    if alive and pid == os.getpid() and owner.get("run") is not None:
        return owner["run"] in _LIVE_RUNS  # this process: is that search still running?
    return alive


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _process_start(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _heartbeat_ages(storage: BaseStorage, study_id: int) -> dict[int, float]:
    """Seconds since each RUNNING trial's last heartbeat, by the database's clock."""
    import sqlalchemy
    from optuna.storages._rdb import models

    scoped = getattr(storage, "scoped_session", None)
    if scoped is None:
        return {}
    session = scoped()
    try:
        now = session.execute(sqlalchemy.func.now()).scalar()
        rows = (
            session.query(models.TrialHeartbeatModel.trial_id, models.TrialHeartbeatModel.heartbeat)
            .join(models.TrialModel)
            .filter(models.TrialModel.study_id == study_id)
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .all()
        )
        session.commit()
    finally:
        session.close()
    if now is None:
        return {}
    now = now.replace(tzinfo=None)
    return {tid: (now - beat.replace(tzinfo=None)).total_seconds() for tid, beat in rows}


def _grace_period(storage: BaseStorage) -> float:
    grace = getattr(storage, "grace_period", None)
    if grace is None:
        interval = getattr(storage, "heartbeat_interval", None) or HEARTBEAT_INTERVAL_S
        grace = 2 * interval
    return float(grace)


def stale_reason(
    trial: optuna.trial.FrozenTrial, heartbeat_age: float | None, grace: float
) -> str | None:
    """Why the RUNNING ``trial`` has no live owner, or None while it may still be running.

    A trial whose owner process is known to be alive is never stale; one whose owner is
    known to be gone is stale at once; otherwise its heartbeat (or, without any
    heartbeat, its start time) must be older than ``grace`` seconds.
    """
    owner = trial.system_attrs.get(TRIAL_OWNER)
    alive = owner_alive(owner)
    if alive is True:
        return None
    if alive is False:
        if owner.get("pid") == os.getpid():
            return f"the search that started it in this process ({owner['pid']}) has ended"
        return (
            f"driver process {owner['pid']} on {owner['host']} is gone (crash or kill?)"
        )
    if heartbeat_age is not None:
        if heartbeat_age > grace:
            return (
                f"no heartbeat for {heartbeat_age:.0f} s (grace period {grace:.0f} s): the "
                "driver crashed or lost the database"
            )
        return None
    start = trial.datetime_start
    if start is not None and (datetime.now() - start).total_seconds() > grace:
        return (
            f"started {(datetime.now() - start).total_seconds():.0f} s ago and never sent a "
            "heartbeat: the driver crashed"
        )
    return None


def sweep_stale(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials that no live driver owns, re-queueing each config once.

    Safe to call from any number of processes at any time: a trial whose owner is alive
    (same machine) or whose heartbeat is younger than the storage's grace period is left
    alone, and only the process whose FAIL update succeeds re-queues the trial. The
    reason is stored on the failed trial (user attributes ``error``/``error_type``); the
    re-queued WAITING trial records the original in ``failed_trial``/``retry_history``
    (system attributes, as Optuna's ``RetryHeartbeatStaleTrialCallback``) and
    ``retry_of`` (user attribute). The next ``ask`` on the study picks it up.

    Returns:
        The numbers of the trials this call failed.
    """
    storage = study._storage
    backend = getattr(storage, "_backend", storage)  # under Optuna's _CachedStorage
    running = storage.get_all_trials(
        study._study_id, deepcopy=False, states=(TrialState.RUNNING,)
    )
    if not running:
        return []
    ages = _heartbeat_ages(backend, study._study_id)
    grace = _grace_period(backend)
    failed: list[int] = []
    for trial in running:
        reason = stale_reason(trial, ages.get(trial._trial_id), grace)
        if reason is None:
            continue
        try:  # a finished trial's attributes are frozen: annotate first, then fail
            storage.set_trial_user_attr(trial._trial_id, TRIAL_ERROR, reason)
            storage.set_trial_user_attr(trial._trial_id, TRIAL_ERROR_TYPE, STALE_TRIAL)
            if not storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # finished meanwhile, or another process swept it first
        requeue_once(study, storage.get_trial(trial._trial_id))
        failed.append(trial.number)
    return failed


def wait_for_others(study: optuna.Study, n_trials: int, poll_s: float | None = None) -> None:
    """Wait while other drivers' RUNNING trials could still bring the study to ``n_trials``.

    Called between rounds, when this driver runs no trial itself: every RUNNING trial
    then belongs to another process. Starting more trials would overshoot ``n_trials``
    if they complete, and stopping would fall short if they fail; so wait, sweeping
    stale ones (their configs are re-queued) every ``poll_s`` seconds (default: the
    storage's heartbeat interval) until they are finished or gone.
    """
    backend = getattr(study._storage, "_backend", study._storage)
    if poll_s is None:
        poll_s = float(getattr(backend, "heartbeat_interval", None) or HEARTBEAT_INTERVAL_S)
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    while True:
        sweep_stale(study)
        trials = study._storage.get_all_trials(study._study_id, deepcopy=False, states=states)
        finished = sum(t.state != TrialState.RUNNING for t in trials)
        if finished >= n_trials or len(trials) < n_trials:
            return
        time.sleep(poll_s)


def requeue_once(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Enqueue ``trial``'s config again as a WAITING trial, unless it already is a retry.

    Like Optuna's ``RetryHeartbeatStaleTrialCallback(max_retry=1)`` but without copying
    the failed attempt's measurements or constraints onto the new trial.
    """
    history = list(trial.system_attrs.get("retry_history", []))
    history.append(trial.number)
    if len(history) > MAX_RETRY:
        return
    study.add_trial(
        optuna.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={TRIAL_RETRY_OF: trial.number},
            system_attrs={
                "failed_trial": trial.system_attrs.get("failed_trial", trial.number),
                "retry_history": history,
            },
        )
    )
