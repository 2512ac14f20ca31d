"""Re-queueing the config of a trial whose driver died, once."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from search.study._keys import (
    MAX_RETRY,
    TRIAL_FAILED_TRIAL,
    TRIAL_RETRY_HISTORY,
    TRIAL_RETRY_OF,
)


def requeue_once(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Enqueue ``trial``'s config again as a WAITING trial, unless it already is a retry.

    Like Optuna's ``RetryHeartbeatStaleTrialCallback(max_retry=1)`` (and usable as the
    storage's ``heartbeat_stale_trial_callback``) but without copying the failed
    attempt's measurements or constraints onto the new trial. The new trial records the
    original in ``retry_of`` (user attribute) and ``failed_trial``/``retry_history``
    (system attributes, as Optuna's callback does).
    """
    history = list(trial.system_attrs.get(TRIAL_RETRY_HISTORY, []))
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
                TRIAL_FAILED_TRIAL: trial.system_attrs.get(TRIAL_FAILED_TRIAL, trial.number),
                TRIAL_RETRY_HISTORY: history,
            },
        )
    )
