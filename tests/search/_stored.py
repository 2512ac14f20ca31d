"""Add a COMPLETE trial to a slimsearch study as its searcher would record it.

For tests that need a front point with given figures (a lucky one, one that fails on
the confirmation rows): the trial is judged by the study's own constraint
(``accuracy_drop_constraint`` at its stored drop and confidence), so Optuna's
``best_trials`` and our front treat it exactly as a searched one.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState, create_trial

from search import StudyInfo
from search.study import CONSTRAINT, accuracy_drop_constraint


def add_trial(
    study: optuna.Study,
    info: StudyInfo,
    *,
    accuracy: float,
    se: float,
    latency_ms: float,
    size_bytes: int,
    params: dict[str, Any] | None = None,
    **attrs: Any,
) -> int:
    """Add a COMPLETE trial (params default: those of the study's first trial) and
    return its number. ``attrs`` are extra user attributes."""
    like = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))[0]
    base = float(info.baseline["accuracy"])
    params = dict(like.params) if params is None else params
    distributions = {k: like.distributions[k] for k in params if k in like.distributions}
    for k in params:
        if k not in distributions:
            value = params[k]
            distributions[k] = optuna.distributions.CategoricalDistribution([value])
    study.add_trial(create_trial(
        values=[accuracy, latency_ms, size_bytes],
        params=params,
        distributions=distributions,
        user_attrs={"accuracy_delta": accuracy - base, "accuracy_delta_se": se,
                    "test_accuracy": accuracy, **attrs},
        constraints={CONSTRAINT: accuracy_drop_constraint(
            accuracy, base, info.max_accuracy_drop, se=se,
            confidence=info.accuracy_confidence)},
    ))
    return study.get_trials(deepcopy=False)[-1].number
