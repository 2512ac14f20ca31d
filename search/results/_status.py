"""Where a study stands — trial counts, failures and why, best so far (``slimsearch status``).

Contract: reading the status never changes the study (no sweep, no re-queue, and a
missing SQLite file is not created), so it is safe to run against a study another
process is searching.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from search.study import (
    ATTR_BASELINE,
    METRICS,
    MODES,
    TRIAL_ERROR,
    TRIAL_ERROR_TYPE,
    TRIAL_RETRY_OF,
    TRIAL_TRACEBACK,
    StudyInfo,
    is_feasible,
    open_study,
)

_STATES = (
    TrialState.COMPLETE,
    TrialState.RUNNING,
    TrialState.WAITING,
    TrialState.PRUNED,
    TrialState.FAIL,
)


@dataclass(frozen=True)
class Failure:
    """One FAIL trial: its number, the error's type and message, its retry if any, and
    the tail of the worker's traceback when one was recorded."""

    trial: int
    error_type: str
    error: str
    retried_as: int | None
    traceback: str | None = None


@dataclass(frozen=True)
class StudyStatus:
    """A study's state at one moment.

    Attributes:
        study_name: The study.
        counts: Trial-state name (``COMPLETE``, ``RUNNING``, ``WAITING``, ``PRUNED``,
            ``FAIL``) → number of trials, every state present.
        failures: The FAIL trials, in trial order.
        best: Objective → ``(trial number, value)`` of the best COMPLETE trial that meets
            the accuracy constraint; objectives without such a trial are absent.
        baseline: The teacher's metrics.
        max_accuracy_drop: The study's constraint, or None.
        accuracy_confidence: The confidence the constraint is judged at, or None.
        uncertain: COMPLETE trials within the drop on their point estimate but not at the
            confidence (``accuracy_drop_constraint``): within it only by luck, maybe.
        best_accuracy: Trial number → ``(validation accuracy, accuracy_delta_se)`` of
            each trial in ``best`` (the standard error None when not recorded).
    """

    study_name: str
    counts: Mapping[str, int]
    failures: tuple[Failure, ...]
    best: Mapping[str, tuple[int, float]]
    baseline: Mapping[str, Any]
    max_accuracy_drop: float | None
    accuracy_confidence: float | None = None
    uncertain: tuple[int, ...] = ()
    best_accuracy: Mapping[int, tuple[float, float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of everything above."""
        return {
            "study": self.study_name,
            "counts": dict(self.counts),
            "failures": [
                {"trial": f.trial, "error_type": f.error_type, "error": f.error,
                 "retried_as": f.retried_as, "traceback": f.traceback}
                for f in self.failures
            ],
            "best": {k: {"trial": t, "value": v, "accuracy": self.best_accuracy[t][0],
                         "accuracy_delta_se": self.best_accuracy[t][1]}
                     for k, (t, v) in self.best.items()},
            "baseline": dict(self.baseline),
            "max_accuracy_drop": self.max_accuracy_drop,
            "accuracy_confidence": self.accuracy_confidence,
            "uncertain": list(self.uncertain),
        }


def study_status(storage_url: str, study_name: str) -> StudyStatus:
    """Read the status of ``study_name`` in ``storage_url`` without changing anything.

    Raises:
        StorageError: the storage cannot be opened.
        StudyNotFoundError: no such study.
        StudyMismatchError: the study was not created by slimsearch.
    """
    study, info = open_study(storage_url, study_name)
    return status_of(study, info)


def status_of(study: optuna.Study, info: StudyInfo) -> StudyStatus:
    """The status of an open ``study``."""
    trials = study.get_trials(deepcopy=False)
    counts = {s.name: 0 for s in _STATES}
    retries: dict[int, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
        origin = t.user_attrs.get(TRIAL_RETRY_OF)
        if isinstance(origin, int):
            retries[origin] = t.number
    failures = tuple(
        Failure(
            trial=t.number,
            error_type=str(t.user_attrs.get(TRIAL_ERROR_TYPE, "unknown")),
            error=str(t.user_attrs.get(TRIAL_ERROR, "no reason recorded")),
            retried_as=retries.get(t.number),
            traceback=t.user_attrs.get(TRIAL_TRACEBACK),
        )
        for t in trials
        if t.state == TrialState.FAIL
    )
    feasible = [t for t in trials if is_feasible(t)]
    uncertain: tuple[int, ...] = ()
    base_acc = (study.user_attrs.get(ATTR_BASELINE) or {}).get("accuracy")
    if info.max_accuracy_drop is not None and base_acc is not None:
        floor = float(base_acc) - info.max_accuracy_drop
        uncertain = tuple(
            t.number for t in trials
            if t.state == TrialState.COMPLETE and not is_feasible(t) and t.values
            and t.values[0] >= floor - 1e-12
        )
    best: dict[str, tuple[int, float]] = {}
    best_accuracy: dict[int, tuple[float, float | None]] = {}
    for i, (metric, mode) in enumerate(zip(METRICS, MODES, strict=True)):
        if feasible:
            pick = max if mode == "max" else min
            t = pick(feasible, key=lambda t, i=i: t.values[i])
            best[metric] = (t.number, float(t.values[i]))
            se = t.user_attrs.get("accuracy_delta_se")
            best_accuracy[t.number] = (float(t.values[0]), None if se is None else float(se))
    return StudyStatus(
        study_name=study.study_name,
        counts=counts,
        failures=failures,
        best=best,
        baseline=dict(study.user_attrs.get(ATTR_BASELINE) or {}),
        max_accuracy_drop=info.max_accuracy_drop,
        accuracy_confidence=info.accuracy_confidence,
        uncertain=uncertain,
        best_accuracy=best_accuracy,
    )
