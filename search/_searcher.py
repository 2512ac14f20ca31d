"""Ray Tune's ``OptunaSearch``, extended to record what a slimsearch study needs.

On top of ``OptunaSearch`` (ask/tell on our RDB-stored study) this searcher:

* writes each trial's owner (this process) and heartbeat when it starts, renews the
  heartbeat while it runs, and periodically sweeps trials that no live driver owns
  (FAIL + re-queue once, see ``_study.sweep_stale``) — Optuna's own heartbeat does not
  cover ask/tell;
* stops suggesting once the study's finished plus RUNNING trials reach ``n_trials``, so
  several drivers sharing a study do not overshoot it;
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

from search._study import (
    CONSTRAINT,
    METRICS,
    MODES,
    TRIAL_ERROR,
    TRIAL_ERROR_TYPE,
    TRIAL_OWNER,
    accuracy_drop_constraint,
    end_run,
    owner_identity,
    start_run,
    sweep_stale,
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
    "trial_fn_s",
    "prune_s",
    "finetune_s",
    "quantize_s",
    "measure_s",
    "seed",
    "device",
    "node",
    "epoch_accuracies",
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
        n_trials: int | None = None,
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
        self._n_trials = n_trials
        self._run = start_run()
        self._owner = owner_identity(self._run)
        self._interval = float(getattr(storage, "heartbeat_interval", None) or 5)
        self._grace = float(getattr(storage, "grace_period", None) or 4 * self._interval)
        self._last_beat = 0.0
        self._last_sweep = time.monotonic()
        self.completed = 0
        self.failed = 0
        self.pruned = 0
        self.swept: list[int] = []
        self.budget_reached = False
        self._reseeded = False

    # ----------------------------------------------------------------- heartbeat
    def _beat(self, trial: optuna.Trial) -> None:
        try:
            self._ot_study._storage.record_heartbeat(trial._trial_id)
        except Exception as exc:  # a missed beat is retried on the next tick
            logger.debug("heartbeat failed: %s", exc)

    def heartbeat(self, force: bool = False) -> None:
        """Renew the heartbeat of every trial this searcher has running; sweep now and then.

        Every half grace period this also fails and re-queues other drivers' trials whose
        owner is gone (``sweep_stale``); trials of live drivers are left alone.
        """
        now = time.monotonic()
        if not force and now - self._last_beat < self._interval:
            return
        self._last_beat = now
        for tid, trial in self._ot_trials.items():
            if tid not in self._completed_trials:
                self._beat(trial)
        if now - self._last_sweep >= self._grace / 2:
            self._last_sweep = now
            try:
                swept = sweep_stale(self._ot_study)
            except Exception as exc:  # a failed sweep is retried on the next one
                logger.debug("stale-trial sweep failed: %s", exc)
                return
            if swept:
                logger.warning("re-queued stale trials %s (their driver is gone)", swept)
                self.swept.extend(swept)

    def close(self) -> None:
        """The run has ended: trials of it still RUNNING may be swept from now on."""
        end_run(self._run)

    def _look_at_study(self) -> bool:
        """Whether the ``n_trials`` budget has room; reseed when another driver runs trials.

        Samplers of drivers started together with the same seed would propose the same
        random start-up configs: the first time this searcher sees a RUNNING trial of
        another process, it reseeds its sampler at random. A lone driver never does, so
        its search stays a function of its seed.
        """
        taken = self._ot_study._storage.get_all_trials(
            self._ot_study._study_id,
            deepcopy=False,
            states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING),
        )
        if not self._reseeded and any(
            t.state == TrialState.RUNNING and t.system_attrs.get(TRIAL_OWNER) != self._owner
            for t in taken
        ):
            self._ot_study.sampler.reseed_rng()
            self._reseeded = True
        return self._n_trials is None or len(taken) < self._n_trials

    def suggest(self, trial_id: str) -> dict | None:
        if trial_id not in self._ot_trials and not self._look_at_study():
            self.budget_reached = True
            return OptunaSearch.FINISHED
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
            config = super().suggest(trial_id)
        if trial_id in self._ot_trials:
            trial = self._ot_trials[trial_id]
            try:
                self._ot_study._storage.set_trial_system_attr(
                    trial._trial_id, TRIAL_OWNER, self._owner
                )
            except Exception as exc:  # the heartbeat still guards the trial
                logger.debug("recording the trial owner failed: %s", exc)
            self._beat(trial)
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
        if result.get("stopped"):
            # Stopped early: the partial validation metric and the pre-measured latency
            # and size are kept as attributes; the trial never enters the front.
            trial.set_user_attr("stopped", str(result["stopped"]))
            for m in METRICS:
                if m in result and math.isfinite(float(result[m])):
                    trial.set_user_attr(f"partial_{m}", float(result[m]))
            self._tell(trial_id, trial, None, TrialState.PRUNED)
            self.pruned += 1
            return
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

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._searcher.close()


def _failure(result: dict[str, Any], error: bool) -> tuple[str | None, str]:
    """(message, type) when ``result`` is not a valid completion, else (None, "")."""
    if result.get("error"):
        return str(result["error"]), str(result.get("error_type", "Exception"))
    if result.get("stopped"):
        return None, ""
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
