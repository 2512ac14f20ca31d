"""Ray Tune's ``OptunaSearch``, extended to record what a slimsearch study needs.

On top of ``OptunaSearch`` (ask/tell on our RDB-stored study) this searcher:

* writes each trial's heartbeat when it starts and while it runs, so a crashed driver's
  trials can be told from live ones and re-queued (Optuna's own heartbeat does not
  cover ask/tell);
* stores the accuracy-drop constraint with Optuna's ``set_constraint`` and extra
  measurements (test accuracy, per-phase seconds, latency spread) as user attributes
  before telling the result, so samplers and ``best_trials`` see them;
* turns a trial that reported an error, or crashed, into a FAIL with the error's type
  and message stored on the trial.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.search.optuna import OptunaSearch

from search._storage import HEARTBEAT_INTERVAL_S
from search._study import (
    CONSTRAINT,
    METRICS,
    MODES,
    TRIAL_ERROR,
    TRIAL_ERROR_TYPE,
    accuracy_drop_constraint,
)

logger = logging.getLogger(__name__)

# We renew heartbeats ourselves (see ``heartbeat``), which Optuna does not expect outside
# ``Study.optimize``; its warning on every ``ask`` is noise here.
warnings.filterwarnings(
    "ignore", message="Heartbeat of storage is supposed to be used", category=UserWarning
)

# Keys a trial reports besides the objectives that are stored as user attributes.
REPORTED_ATTRS = (
    "test_accuracy",
    "num_parameters",
    "latency_cv",
    "latency_p90_ms",
    "compute_s",
    "prune_s",
    "finetune_s",
    "quantize_s",
    "measure_s",
    "seed",
    "device",
)


class StudySearcher(OptunaSearch):
    """``OptunaSearch`` over a slimsearch study (see the module docstring)."""

    def __init__(
        self,
        *,
        space: dict[str, optuna.distributions.BaseDistribution],
        sampler: optuna.samplers.BaseSampler,
        study_name: str,
        storage: optuna.storages.BaseStorage,
        baseline_accuracy: float,
        max_accuracy_drop: float | None,
    ) -> None:
        super().__init__(
            space=space,
            metric=list(METRICS),
            mode=list(MODES),
            sampler=sampler,
            study_name=study_name,
            storage=storage,
        )
        self._baseline_accuracy = baseline_accuracy
        self._max_drop = max_accuracy_drop
        self._last_beat = 0.0
        self.completed = 0
        self.failed = 0

    # ----------------------------------------------------------------- heartbeat
    def _beat(self, trial: optuna.Trial) -> None:
        try:
            self._ot_study._storage.record_heartbeat(trial._trial_id)
        except Exception as exc:  # a missed beat is retried on the next tick
            logger.debug("heartbeat failed: %s", exc)

    def heartbeat(self, force: bool = False) -> None:
        """Renew the heartbeat of every trial this searcher has running."""
        now = time.monotonic()
        if not force and now - self._last_beat < HEARTBEAT_INTERVAL_S:
            return
        self._last_beat = now
        for tid, trial in self._ot_trials.items():
            if tid not in self._completed_trials:
                self._beat(trial)

    def suggest(self, trial_id: str) -> dict | None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
            config = super().suggest(trial_id)
        if trial_id in self._ot_trials:
            self._beat(self._ot_trials[trial_id])
        return config

    # --------------------------------------------------------------- completion
    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        trial = self._ot_trials[trial_id]
        result = result or {}
        message, kind = _failure(result, error)
        if message is not None:
            trial.set_user_attr(TRIAL_ERROR, message)
            trial.set_user_attr(TRIAL_ERROR_TYPE, kind)
            self._tell(trial_id, trial, None, TrialState.FAIL)
            self.failed += 1
            logger.warning("trial %d failed: %s", trial.number, message)
            return
        for key in REPORTED_ATTRS:
            if key in result:
                trial.set_user_attr(key, result[key])
        trial.set_constraint(
            CONSTRAINT,
            accuracy_drop_constraint(
                float(result["accuracy"]), self._baseline_accuracy, self._max_drop
            ),
        )
        values = [float(result[m]) for m in METRICS]
        self._tell(trial_id, trial, values, TrialState.COMPLETE)
        self.completed += 1

    def _tell(
        self,
        trial_id: str,
        trial: optuna.Trial,
        values: list[float] | None,
        state: TrialState,
    ) -> None:
        try:
            self._ot_study.tell(trial, values, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            logger.warning("trial %d was already finished by another process", trial.number)
        self._completed_trials.add(trial_id)


class HeartbeatCallback(Callback):
    """Renews running trials' heartbeats from Tune's event loop."""

    def __init__(self, searcher: StudySearcher) -> None:
        self._searcher = searcher

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self._searcher.heartbeat()


def _failure(result: dict[str, Any], error: bool) -> tuple[str | None, str]:
    """(message, type) when ``result`` is not a valid completion, else (None, "")."""
    if result.get("error"):
        return str(result["error"]), str(result.get("error_type", "Exception"))
    if error or not result:
        return (
            "the trial's worker raised or died without reporting (see Ray's logs)",
            "WorkerError",
        )
    missing = [m for m in METRICS if m not in result]
    if missing:
        return f"trial reported no {', '.join(missing)}", "MissingMetric"
    bad = [m for m in METRICS if not math.isfinite(float(result[m]))]
    if bad:
        return f"trial reported non-finite {', '.join(bad)}", "NonFiniteMetric"
    return None, ""
