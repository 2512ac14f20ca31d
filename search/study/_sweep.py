"""The stale-trial sweep: fail RUNNING trials that no live driver owns, re-queue once.

Optuna's heartbeat only covers ``Study.optimize``; slimsearch drives studies with
ask/tell, so it renews heartbeats itself (``run.StudySearcher``) and sweeps here. A
trial is stale when its owner process is known to be gone (same machine), or when its
heartbeat — without one, its start — is older than the storage's grace period. Every
call works through the public ``BaseStorage`` API on the raw ``RDBStorage`` (trial ids
from ``get_trial_id_from_study_id_trial_number``), except the heartbeat ages
(``_optuna_internals``).
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from search.study._keys import STALE_TRIAL, TRIAL_ERROR, TRIAL_ERROR_TYPE, TRIAL_OWNER
from search.study._optuna_internals import heartbeat_ages
from search.study._owner import owner_alive
from search.study._retry import requeue_once
from search.study._storage import HEARTBEAT_INTERVAL_S

if TYPE_CHECKING:
    from optuna.storages import RDBStorage


def grace_period(storage: RDBStorage) -> float:
    """Seconds without a heartbeat after which a RUNNING trial is stale."""
    grace = getattr(storage, "grace_period", None)
    if grace is None:
        interval = storage.get_heartbeat_interval() or HEARTBEAT_INTERVAL_S
        grace = 2 * interval
    return float(grace)


def heartbeat_interval(storage: RDBStorage) -> float:
    """Seconds between two heartbeats of a live trial."""
    return float(storage.get_heartbeat_interval() or HEARTBEAT_INTERVAL_S)


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


def sweep_stale(storage: RDBStorage, study: optuna.Study) -> list[int]:
    """Fail RUNNING trials of ``study`` that no live driver owns, re-queueing each once.

    Safe to call from any number of processes at any time: a trial whose owner is alive
    (same machine) or whose heartbeat is younger than the storage's grace period is left
    alone, and only the process whose FAIL update succeeds re-queues the trial. The
    reason is stored on the failed trial (``error``/``error_type``); the re-queued
    WAITING trial records the original (``requeue_once``). The next ``ask`` on the study
    picks it up.

    Args:
        storage: The raw storage ``study`` lives in (as ``open_storage`` returns it).
        study: The study.

    Returns:
        The numbers of the trials this call failed.
    """
    study_id = storage.get_study_id_from_name(study.study_name)
    running = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    ages = heartbeat_ages(storage, study_id)
    grace = grace_period(storage)
    failed: list[int] = []
    for trial in running:
        reason = stale_reason(trial, ages.get(trial.number), grace)
        if reason is None:
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:  # a finished trial's attributes are frozen: annotate first, then fail
            storage.set_trial_user_attr(trial_id, TRIAL_ERROR, reason)
            storage.set_trial_user_attr(trial_id, TRIAL_ERROR_TYPE, STALE_TRIAL)
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # finished meanwhile, or another process swept it first
        requeue_once(study, storage.get_trial(trial_id))
        failed.append(trial.number)
    return failed


def wait_for_others(
    storage: RDBStorage, study: optuna.Study, n_trials: int, poll_s: float | None = None
) -> None:
    """Wait while other drivers' RUNNING trials could still bring the study to ``n_trials``.

    Called between rounds, when this driver runs no trial itself: every RUNNING trial
    then belongs to another process. Starting more trials would overshoot ``n_trials``
    if they complete, and stopping would fall short if they fail; so wait, sweeping
    stale ones (their configs are re-queued) every ``poll_s`` seconds (default: the
    storage's heartbeat interval) until they are finished or gone.
    """
    if poll_s is None:
        poll_s = heartbeat_interval(storage)
    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    while True:
        sweep_stale(storage, study)
        trials = study.get_trials(deepcopy=False, states=states)
        finished = sum(t.state != TrialState.RUNNING for t in trials)
        if finished >= n_trials or len(trials) < n_trials:
            return
        time.sleep(poll_s)
