"""``StudySearcher``: a Ray Tune ``Searcher`` over a slimsearch study, through public APIs.

Ray Tune asks a ``Searcher`` for configs (``suggest``) and tells it results
(``on_trial_complete``); this one maps both onto Optuna's public ask/tell on the study
in the database, so every trial lives in the study from the moment Tune starts it.
Beyond ask/tell it

* records each trial's owner (this process and run) and renews its heartbeat while it
  runs (``heartbeat``, called from Tune's event loop by ``HeartbeatCallback``), and
  periodically sweeps trials no live driver owns (``search.study.sweep_stale``) —
  Optuna's own heartbeat covers ``Study.optimize`` only, not ask/tell;
* stops suggesting once the study's finished plus RUNNING trials reach ``n_trials``, so
  several drivers sharing a study do not overshoot it;
* stores the accuracy-drop constraint with Optuna's ``set_constraint`` and the trial's
  other measurements as user attributes before telling the result, so samplers and
  ``best_trials`` see them;
* turns a trial that reported an error, or whose worker died, into a FAIL with the
  error's type, message and traceback stored on the trial.

Only public APIs are used: ``Study.ask``/``tell``/``get_trials``, ``Trial.set_user_attr``
/``set_constraint``, the ``BaseStorage`` methods of the raw ``RDBStorage`` (trial ids from
``get_trial_id_from_study_id_trial_number``) and ``RDBStorage.record_heartbeat``.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.search import Searcher

from search.run._messages import TrialReport
from search.study import (
    CONSTRAINT,
    METRICS,
    TRIAL_ERROR,
    TRIAL_ERROR_TYPE,
    TRIAL_OWNER,
    TRIAL_STOPPED,
    TRIAL_TRACEBACK,
    WORKER_ERROR,
    accuracy_drop_constraint,
    end_run,
    grace_period,
    heartbeat_interval,
    owner_identity,
    partial_key,
    start_run,
    sweep_stale,
)

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.storages import RDBStorage

logger = logging.getLogger(__name__)

_HEARTBEAT_WARNING = "Heartbeat of storage is supposed to be used"


@dataclass
class _Running:
    """A trial this searcher started: the Optuna trial and its storage id."""

    trial: optuna.Trial
    trial_id: int


class StudySearcher(Searcher):
    """A Ray Tune searcher whose trials are the study's trials (see the module docstring).

    Args:
        study: The study, loaded with the sampler to use this round.
        storage: The raw storage the study lives in (``search.study.open_storage``).
        space: The searched parameters' Optuna distributions.
        conditions: Conditional parameters of ``space`` (``SearchSpace.conditions``):
            ``{name: (parent, values)}`` — ``name`` is drawn (after the others, by the
            trial's public ``suggest_*``) only when ``parent`` took one of ``values``.
        baseline_accuracy: The teacher's validation metric.
        max_accuracy_drop: The study's constraint, or None.
        accuracy_confidence: Judge the constraint on the paired lower bound at this
            confidence (None: on the point estimate).
        n_trials: The study's total of finished trials to stop at, or None.
    """

    def __init__(
        self,
        *,
        study: optuna.Study,
        storage: RDBStorage,
        space: dict[str, BaseDistribution],
        baseline_accuracy: float,
        max_accuracy_drop: float | None,
        n_trials: int | None = None,
        accuracy_confidence: float | None = None,
        conditions: Mapping[str, tuple[str, tuple[Any, ...]]] | None = None,
    ) -> None:
        super().__init__()  # no metric/mode: the study holds the objectives' directions
        self._study = study
        self._storage = storage
        self._study_id = storage.get_study_id_from_name(study.study_name)
        cond = dict(conditions or {})
        self._space = {k: v for k, v in space.items() if k not in cond}
        # name -> (distribution, parent, the parent's values that enable it)
        self._conditional = {k: (space[k], *cond[k]) for k in cond if k in space}
        self._baseline_accuracy = baseline_accuracy
        self._max_drop = max_accuracy_drop
        self._confidence = accuracy_confidence
        self._n_trials = n_trials
        self._run = start_run()
        self._owner = owner_identity(self._run)
        self._interval = heartbeat_interval(storage)
        self._grace = grace_period(storage)
        self._running: dict[str, _Running] = {}
        self._last_beat = 0.0
        self._last_sweep = time.monotonic()
        self.completed = 0
        self.failed = 0
        self.pruned = 0
        self.swept: list[int] = []
        self.budget_reached = False
        self._reseeded = False

    # ----------------------------------------------------------------- Tune API
    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        """Accept Tune's properties: the space and objectives come from the study."""
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """Ask the study for a trial (a queued one first) and return its parameters."""
        if not self._has_room():
            self.budget_reached = True
            return Searcher.FINISHED
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_HEARTBEAT_WARNING)
            trial = self._study.ask(fixed_distributions=self._space)
            for name, (dist, parent, values) in self._conditional.items():
                if trial.params.get(parent) in values:
                    _suggest(trial, name, dist)
        trial_db_id = self._storage.get_trial_id_from_study_id_trial_number(
            self._study_id, trial.number
        )
        self._running[trial_id] = _Running(trial, trial_db_id)
        try:
            self._storage.set_trial_system_attr(trial_db_id, TRIAL_OWNER, self._owner)
        except Exception as exc:  # the heartbeat still guards the trial
            logger.debug("recording the trial owner failed: %s", exc)
        self._beat(trial_db_id)
        return dict(trial.params)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        """Tell the study how the trial ended: COMPLETE, PRUNED (stopped early) or FAIL."""
        running = self._running.pop(trial_id, None)
        if running is None:
            return
        report = TrialReport.from_metrics(result)
        failure = report.failure()
        if failure is None and error and report.stopped is None:
            failure = (WORKER_ERROR, "the trial's worker raised or died (see Ray's logs)")
        try:
            if failure is not None:
                self._record_failure(running.trial, report, *failure)
            elif report.stopped is not None:
                self._record_stopped(running.trial, report)
            else:
                self._record_complete(running.trial, report)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Swept by another process meanwhile (its driver looked dead): keep theirs.
            logger.warning("trial %d was already finished by another process",
                           running.trial.number)

    def save(self, checkpoint_path: str) -> None:
        """Tune checkpoints its searcher; this one's state is the study in the database."""
        Path(checkpoint_path).write_text(
            json.dumps({"study": self._study.study_name}), encoding="utf-8"
        )

    def restore(self, checkpoint_path: str) -> None:
        """Nothing to restore: a resumed search reads the study from the database."""

    def __getstate__(self) -> dict[str, Any]:
        """What Tune pickles into its experiment state: everything but the live study,
        storage and running trials. The study is the state (a resumed search reloads it
        from the database, never from Tune's copy), and a study's sampler need not pickle
        (Optuna 5.1's ``NSGAIISampler`` holds a thread lock)."""
        state = self.__dict__.copy()
        state.update(_study=None, _storage=None, _running={})
        return state

    # ----------------------------------------------------------------- liveness
    def heartbeat(self, force: bool = False) -> None:
        """Renew the heartbeat of every trial this searcher has running; sweep now and then.

        Every half grace period this also fails and re-queues other drivers' trials whose
        owner is gone (``sweep_stale``); trials of live drivers are left alone.
        """
        now = time.monotonic()
        if not force and now - self._last_beat < self._interval:
            return
        self._last_beat = now
        for running in list(self._running.values()):
            self._beat(running.trial_id)
        if now - self._last_sweep >= self._grace / 2:
            self._last_sweep = now
            try:
                swept = sweep_stale(self._storage, self._study)
            except Exception as exc:  # a failed sweep is retried on the next one
                logger.debug("stale-trial sweep failed: %s", exc)
                return
            if swept:
                logger.warning("re-queued stale trials %s (their driver is gone)", swept)
                self.swept.extend(swept)

    def close(self) -> None:
        """The run has ended: trials of it still RUNNING may be swept from now on."""
        end_run(self._run)

    # ------------------------------------------------------------------ private
    def _beat(self, trial_db_id: int) -> None:
        try:
            self._storage.record_heartbeat(trial_db_id)
        except Exception as exc:  # a missed beat is retried on the next tick
            logger.debug("heartbeat failed: %s", exc)

    def _has_room(self) -> bool:
        """Whether the ``n_trials`` budget has room; reseed when another driver runs trials.

        Samplers of drivers started together with the same seed would propose the same
        random start-up configs: the first time this searcher sees a RUNNING trial of
        another process, it reseeds its sampler at random. A lone driver never does, so
        its search stays a function of its seed.
        """
        taken = self._study.get_trials(
            deepcopy=False,
            states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING),
        )
        if not self._reseeded and any(
            t.state == TrialState.RUNNING and t.system_attrs.get(TRIAL_OWNER) != self._owner
            for t in taken
        ):
            self._study.sampler.reseed_rng()
            self._reseeded = True
        return self._n_trials is None or len(taken) < self._n_trials

    def _record_failure(
        self, trial: optuna.Trial, report: TrialReport, kind: str, message: str
    ) -> None:
        trial.set_user_attr(TRIAL_ERROR, message)
        trial.set_user_attr(TRIAL_ERROR_TYPE, kind)
        if report.traceback:
            trial.set_user_attr(TRIAL_TRACEBACK, report.traceback)
        if self._tell(trial, None, TrialState.FAIL):
            self.failed += 1
            logger.warning("trial %d failed: %s", trial.number, message)

    def _record_stopped(self, trial: optuna.Trial, report: TrialReport) -> None:
        """Stopped early: the partial objectives are kept as attributes; never on the front."""
        for key, value in report.attributes().items():
            trial.set_user_attr(key, value)
        trial.set_user_attr(TRIAL_STOPPED, report.stopped)
        for metric, value in zip(METRICS, report.objectives(), strict=True):
            if math.isfinite(value):
                trial.set_user_attr(partial_key(metric), value)
        if self._tell(trial, None, TrialState.PRUNED):
            self.pruned += 1

    def _record_complete(self, trial: optuna.Trial, report: TrialReport) -> None:
        for key, value in report.attributes().items():
            trial.set_user_attr(key, value)
        trial.set_constraint(
            CONSTRAINT,
            accuracy_drop_constraint(
                report.accuracy, self._baseline_accuracy, self._max_drop,
                se=report.accuracy_delta_se, confidence=self._confidence,
            ),
        )
        if self._tell(trial, report.objectives(), TrialState.COMPLETE):
            self.completed += 1
            logger.info(
                "trial %d finished: accuracy %.4f, latency %.3f ms, size %d bytes, params %s",
                trial.number, report.accuracy, report.latency_ms, int(report.size_bytes),
                trial.params,
            )

    def _tell(self, trial: optuna.Trial, values: list[float] | None, state: TrialState) -> bool:
        """Finish ``trial``; False when another process had finished it already."""
        frozen = self._study.tell(trial, values, state=state, skip_if_finished=True)
        if frozen.state != state:
            logger.warning("trial %d was already finished by another process (%s)",
                           trial.number, frozen.state.name)
            return False
        return True


class HeartbeatCallback(Callback):
    """Renews running trials' heartbeats from Tune's event loop."""

    def __init__(self, searcher: StudySearcher) -> None:
        self._searcher = searcher

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        self._searcher.heartbeat()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._searcher.close()


def _suggest(trial: optuna.Trial, name: str, dist: BaseDistribution) -> None:
    """Draw ``name`` from ``dist`` with the trial's public ``suggest_*`` (an enqueued or
    re-queued trial's own value, if it has one)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if isinstance(dist, FloatDistribution):
        trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)
    elif isinstance(dist, IntDistribution):
        trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    elif isinstance(dist, CategoricalDistribution):
        trial.suggest_categorical(name, dist.choices)
    else:  # pragma: no cover - SearchSpace makes only these three
        raise TypeError(f"{name}: no public suggest_* for {type(dist).__name__}")
