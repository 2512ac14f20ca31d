"""How a study's trials are counted and judged: finished, feasible, the constraint value."""

from __future__ import annotations

import math

import optuna
from optuna.trial import FrozenTrial, TrialState

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED)


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that count toward ``n_trials``: COMPLETE, and PRUNED (stopped early)."""
    return study.get_trials(deepcopy=False, states=FINISHED_STATES)


def is_feasible(trial: FrozenTrial) -> bool:
    """Whether ``trial`` is COMPLETE and no constraint of it is violated (``> 0``)."""
    return (
        trial.state == TrialState.COMPLETE
        and trial.values is not None
        and not any(v > 0 for v in trial.constraints.values())
    )


def accuracy_drop_constraint(
    accuracy: float,
    baseline_accuracy: float,
    max_drop: float | None,
    *,
    se: float | None = None,
    confidence: float | None = None,
) -> float:
    """Optuna constraint value: ``<= 0`` iff the trial is within ``max_drop`` of the baseline.

    With the paired standard error ``se`` of the trial's accuracy difference and a
    ``confidence``, the lower confidence bound of the difference must be within the
    drop — ``accuracy - z·se >= baseline - max_drop`` — so a point within the drop only
    by luck on the validation rows is infeasible (an infinite ``se``, from fewer than two
    rows, is never within); without them, the point estimate.
    """
    if max_drop is None:
        return -1.0
    if not math.isfinite(accuracy):
        return 1.0
    from objectives import lower_bound  # lazily: reading a study needs no torch

    if se is not None and not math.isfinite(se) and confidence is not None:
        return 1.0  # an unbounded uncertainty (fewer than 2 rows) shows nothing within
    return float(baseline_accuracy - lower_bound(accuracy, se, confidence) - max_drop)
