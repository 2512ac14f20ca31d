"""``slimsearch status``: where a study stands — trial counts, failures and why, best so far.

Contract: reading the status never changes the study (no sweep, no re-queue, and a
missing SQLite file is not created), so it is safe to run against a study another
process is searching.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from search._study import (
    ATTR_BASELINE,
    METRICS,
    MODES,
    TRIAL_ERROR,
    TRIAL_ERROR_TYPE,
    TRIAL_RETRY_OF,
    StudyInfo,
    load_existing,
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
    """One FAIL trial: its number, the error's type and message, and its retry if any."""

    trial: int
    error_type: str
    error: str
    retried_as: int | None


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
    """

    study_name: str
    counts: Mapping[str, int]
    failures: tuple[Failure, ...]
    best: Mapping[str, tuple[int, float]]
    baseline: Mapping[str, Any]
    max_accuracy_drop: float | None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of everything above."""
        return {
            "study": self.study_name,
            "counts": dict(self.counts),
            "failures": [
                {"trial": f.trial, "error_type": f.error_type, "error": f.error,
                 "retried_as": f.retried_as}
                for f in self.failures
            ],
            "best": {k: {"trial": t, "value": v} for k, (t, v) in self.best.items()},
            "baseline": dict(self.baseline),
            "max_accuracy_drop": self.max_accuracy_drop,
        }


def study_status(storage_url: str, study_name: str) -> StudyStatus:
    """Read the status of ``study_name`` in ``storage_url`` without changing anything.

    Raises:
        StorageError: the storage cannot be opened.
        StudyNotFoundError: no such study.
        StudyMismatchError: the study was not created by slimsearch.
    """
    from search._storage import open_storage

    storage = open_storage(storage_url, create=False)
    study = load_existing(storage, study_name, storage_url)
    info = StudyInfo.from_study(study, storage_url)
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
        )
        for t in trials
        if t.state == TrialState.FAIL
    )
    feasible = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.values is not None
        and not any(v > 0 for v in t.constraints.values())
    ]
    best: dict[str, tuple[int, float]] = {}
    for i, (metric, mode) in enumerate(zip(METRICS, MODES, strict=True)):
        if feasible:
            pick = max if mode == "max" else min
            t = pick(feasible, key=lambda t, i=i: t.values[i])
            best[metric] = (t.number, float(t.values[i]))
    return StudyStatus(
        study_name=study.study_name,
        counts=counts,
        failures=failures,
        best=best,
        baseline=dict(study.user_attrs.get(ATTR_BASELINE) or {}),
        max_accuracy_drop=info.max_accuracy_drop,
    )


def format_status(status: StudyStatus, *, max_failures: int = 20) -> str:
    """Plain-text report: counts, then best so far, then the failures (newest last)."""
    lines = [f"study {status.study_name!r}: " + ", ".join(
        f"{n} {state.lower()}" for state, n in status.counts.items() if n or state == "COMPLETE"
    )]
    base = status.baseline
    constraint = (
        "no accuracy constraint"
        if status.max_accuracy_drop is None
        else f"accuracy drop ≤ {100 * status.max_accuracy_drop:g} pts"
    )
    if status.best:
        lines.append(f"best so far ({constraint}):")
        for metric, (trial, value) in status.best.items():
            lines.append(f"  {metric:<11} {_value(metric, value, base)}  (trial {trial})")
    else:
        lines.append(f"best so far: no COMPLETE trial meets the constraint ({constraint})")
    if status.failures:
        lines.append(format_failures(status, max_failures=max_failures))
    return "\n".join(lines)


def format_failures(status: StudyStatus, *, max_failures: int = 20) -> str:
    """The failed trials with their reasons, newest last (at most ``max_failures``)."""
    shown = status.failures[-max_failures:] if max_failures > 0 else ()
    lines = [f"failed trials ({len(status.failures)}):"]
    if len(shown) < len(status.failures):
        lines.append(f"  … {len(status.failures) - len(shown)} older failures not shown")
    for f in shown:
        retry = f" → re-queued as trial {f.retried_as}" if f.retried_as is not None else ""
        error = f.error if len(f.error) <= 300 else f.error[:299] + "…"
        lines.append(f"  trial {f.trial}: {f.error_type}: {error}{retry}")
    return "\n".join(lines)


def _value(metric: str, value: float, base: Mapping[str, Any]) -> str:
    ref = base.get(metric)
    if metric == "accuracy":
        delta = f" ({100 * (value - ref):+.2f} pts vs teacher)" if ref is not None else ""
        return f"{value:.4f}{delta}"
    ratio = f" ({ref / value:.1f}x vs teacher)" if ref and value else ""
    if metric == "latency_ms":
        return f"{value:.3f} ms{ratio}"
    return f"{value / 1024:.1f} KiB{ratio}"
