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
    accuracy: float, baseline_accuracy: float, max_drop: float | None
) -> float:
    """Optuna constraint value: ``<= 0`` iff ``accuracy >= baseline - max_drop``."""
    if max_drop is None:
        return -1.0
    if not math.isfinite(accuracy):
        return 1.0
    return float(baseline_accuracy - accuracy - max_drop)
