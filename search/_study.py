"""The Optuna study behind a search: its metadata, its objectives, stale-trial sweeps.

A slimsearch study is a plain multi-objective Optuna study — maximize ``accuracy``,
minimize ``latency_ms``, minimize ``size_bytes`` — whose user attributes record what it
was created for. ``optuna.load_study(...).best_trials`` is the Pareto front, with trials
that break the accuracy-drop constraint excluded through Optuna's constraint records.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from search._errors import (
    NOT_OUR_STUDY,
    STUDY_NOT_FOUND,
    StudyMismatchError,
    StudyNotFoundError,
)
from search._storage import redact

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


def create(
    storage: BaseStorage,
    name: str,
    *,
    task: Mapping[str, Any],
    space: Mapping[str, Any],
    baseline: Mapping[str, float],
    max_accuracy_drop: float | None,
    seed: int,
    version: str,
) -> optuna.Study:
    """Create the study with its metadata; the version attribute is written last.

    A study without the version attribute is incomplete (a crash between creation and
    metadata); ``create`` repairs such a study when it has no trials.
    """
    study = optuna.create_study(
        storage=storage, study_name=name, directions=list(DIRECTIONS), load_if_exists=True
    )
    if ATTR_VERSION in study.user_attrs:
        return study
    if study.get_trials(deepcopy=False):
        raise StudyMismatchError(
            f"study {name!r} has trials but no slimsearch metadata; use another study name"
        )
    study.set_user_attr(ATTR_TASK, dict(task))
    study.set_user_attr(ATTR_SPACE, dict(space))
    study.set_user_attr(ATTR_BASELINE, dict(baseline))
    study.set_user_attr(ATTR_MAX_DROP, max_accuracy_drop)
    study.set_user_attr(ATTR_SEED, seed)
    study.set_user_attr(ATTR_VERSION, version)
    return study


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


def sweep_stale(study: optuna.Study) -> int:
    """Fail trials whose driver stopped renewing their heartbeat, re-queueing each once.

    Returns:
        How many trials were failed.
    """
    before = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    stale = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if t.number not in before
    ]
    for t in stale:
        study._storage.set_trial_user_attr(
            t._trial_id, TRIAL_ERROR, "driver stopped renewing the heartbeat (crash?); re-queued"
        )
        study._storage.set_trial_user_attr(t._trial_id, TRIAL_ERROR_TYPE, "StaleTrial")
    return len(stale)
