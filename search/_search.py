"""``Search``: runs a compression study on Ray Tune over an Optuna RDB storage."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import optuna

from objectives import DEFAULT_LOCK_PATH, RETIME_MIN_SECONDS, Task, TaskError, uniform_budget
from search._errors import SearchArgumentError, StudyMismatchError
from search._preflight import fast_corner_warning, preflight, split_size_warning
from search._seeds import (
    enqueue,
    seed_configs,
    slower_precisions,
    space_precisions,
    warm_start_configs,
)
from search.results import ParetoFront, library_versions
from search.run import (
    measure_baseline_remote,
    ray_session,
    retime_remote,
    run_round,
    stored_profiles,
)
from search.study import (
    ATTR_BASELINE,
    ATTR_RETIMED,
    StudyInfo,
    create_or_join,
    find_study,
    finished_trials,
    open_storage,
    redact,
    sweep_stale,
    wait_for_others,
)
from search.view import Progress, quiet_libraries
from spaces import ALLOCATION_BASES, SearchSpace

if TYPE_CHECKING:
    from ray.tune import Callback

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///slimsearch.db"
DEFAULT_MAX_ACCURACY_DROP = 0.01
DEFAULT_ACCURACY_CONFIDENCE = 0.9
"""Confidence at which a new study judges ``max_accuracy_drop`` (docs/accuracy.md)."""
_UNSET: Any = object()
_MAX_ROUNDS = 5
_RETIME_FAILED = (
    "re-timing the front failed ({error}); it shows the latencies measured during the "
    "search — run again to re-time it"
)


def library_version() -> str:
    """The installed slimsearch version ("0+unknown" when not installed)."""
    return library_versions().get("slimsearch", "0+unknown")


def mixed_seed(seed: int, n_existing: int) -> int:
    """Sampler seed for a (re)started study: a fixed seed must not replay earlier configs."""
    return (seed * 1_000_003 + n_existing * 7_919) % (2**32)


class Search:
    """A resumable multi-objective compression search.

    Trials run as Ray Tune trials (``search.run.StudySearcher``: Optuna's ask/tell on
    the RDB study at ``storage``); each compresses the task's teacher (prune → distil →
    quantize) and measures validation accuracy, latency and size. The study maximises accuracy and
    minimises latency and size, subject to accuracy ≥ baseline − ``max_accuracy_drop``.

    ``n_trials`` is the study's total of finished trials — COMPLETE, plus PRUNED ones
    that early stopping ended: running again on the same storage and study name
    continues up to it. Failed trials do not count; a run stops early if a round of
    trials finishes none.

    Example:
        >>> from objectives.tasks import digits
        >>> front = Search(digits(), storage="sqlite:///demo.db", n_trials=20).run()
        >>> recipe_candidate = front.best(prefer="size")

    Args:
        task: What to compress.
        space: What to search; default ``SearchSpace.preset(task.space_preset)`` for a
            new study (the default space, or the transformer preset for text tasks), the
            stored space when resuming. A resumed study must be given the same space.
            Before a new study starts, every operator value in the space is applied
            once to a copy of the teacher (``search._preflight``): a value that would
            not apply or would barely change the model is an error for a given space,
            and is dropped (with a warning) from the default one.
        storage: SQLAlchemy URL of the Optuna storage.
        study_name: Default ``"<task name>"``.
        n_trials: Total finished trials (COMPLETE + PRUNED) wanted in the study.
        max_concurrent_trials: Trials run at once (each takes ``task.threads`` CPUs and
            ``gpus_per_trial`` GPUs). Default: 1 on CPU; with ``gpus_per_trial > 0``, as
            many as the cluster's GPUs hold (``floor(GPUs / gpus_per_trial)``: 0.25 on one
            GPU runs four at once).
        max_accuracy_drop: Largest allowed validation-accuracy drop against the teacher
            (fraction; 0.01 = 1 point); ``None`` for no constraint. Default 0.01 for a new
            study, the stored value when resuming.
        accuracy_confidence: The constraint holds when the *lower bound* of the trial's
            paired accuracy difference to the teacher (same validation rows) at this
            one-sided confidence is within ``max_accuracy_drop`` — a point within the
            drop only by luck is infeasible. In [0.5, 1); default 0.9 for a new study,
            the stored value when resuming. Tasks whose metric is not
            ``objectives.accuracy`` have no per-row outcomes and are judged on the point
            estimate.
        seed: Training seed of every trial, and the sampler's base seed.
        sampler: An Optuna sampler; default Optuna's ``TPESampler`` (chosen by the
            hypervolume benchmark in docs/benchmarks.md) with ``constant_liar`` so that
            parallel trials spread out, seeded per round.
        gpus_per_trial: GPUs per trial (0 = CPU; a fraction shares one GPU between
            trials, each timing latency under that GPU's own measurement lock). A worker
            that was given a GPU but sees none fails its trial with the reason instead of
            running on the CPU.
        ray_address: Address of a running Ray cluster; default a local one.
        callbacks: Extra Ray Tune callbacks.
        early_stopping: Stop trials that cannot meet the accuracy constraint or are
            already dominated (``objectives.EarlyStopping``); they are recorded as PRUNED.
            Off by default: on cheap trials its probes cost more than it saves
            (docs/benchmarks.md); turn it on when the fine-tune dominates a trial.
        seed_configs: Evaluate known-good configs first in a new study
            (``search._seeds.SEEDS``).
        warm_start: Names of earlier studies in the same storage whose Pareto-front
            configs a new study evaluates first.
        measurement_lock: Time latency under a machine-wide lock so parallel trials do
            not disturb it (one lock per GPU for GPU trials); default on when more than
            one trial runs at once.
        retime_rounds: Before ``run`` returns, the front's points are timed again alone,
            interleaved with the teacher, in this many rounds (medians; nothing else runs
            then), and those figures are what ``front``, the report and recipes show —
            the figure measured during the search, beside other trials, stays as
            ``latency_ms`` (it is what the search ranked on). 0: do not re-time. Running
            a finished study again re-times its front when the stored figures do not
            cover it (re-timing was off, or interrupted); a re-timing that fails is one
            warning line, and the front keeps the search's figures.
        retime_seconds: The re-timing goes on with rounds until at least this many
            seconds have passed (``objectives.retime``): a shared CPU's speed switches
            between regimes lasting up to seconds, and a few rounds of a fast model fit
            in one. None: ``$SLIMSEARCH_RETIME_SECONDS``, else 5.
        progress: Show progress while running (``search.Progress``): None
            (default) a live display when stderr is a terminal, else one-line INFO
            records on the ``search.progress`` logger; True always the live display;
            False nothing.

    Raises:
        SearchArgumentError, SpaceError, StorageError, StudyMismatchError: on bad input,
            before anything is written.
    """

    def __init__(
        self,
        task: Task,
        space: SearchSpace | None = None,
        *,
        storage: str = DEFAULT_STORAGE,
        study_name: str | None = None,
        n_trials: int = 30,
        max_concurrent_trials: int | None = None,
        max_accuracy_drop: float | None = _UNSET,
        accuracy_confidence: float = _UNSET,  # type: ignore[assignment]
        seed: int = 0,
        sampler: optuna.samplers.BaseSampler | None = None,
        gpus_per_trial: float = 0.0,
        ray_address: str | None = None,
        callbacks: Sequence[Callback] = (),
        progress: bool | None = None,
        early_stopping: bool = False,
        seed_configs: bool = True,
        warm_start: Sequence[str] = (),
        measurement_lock: bool | None = None,
        retime_rounds: int = 3,
        retime_seconds: float | None = None,
    ) -> None:
        if not isinstance(task, Task):
            raise SearchArgumentError(f"task must be an objectives.Task, got {type(task).__name__}")
        if space is not None and not isinstance(space, SearchSpace):
            raise SearchArgumentError(
                f"space must be a spaces.SearchSpace, got {type(space).__name__}"
            )
        _positive_int("n_trials", n_trials)
        if max_concurrent_trials is not None:
            _positive_int("max_concurrent_trials", max_concurrent_trials)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise SearchArgumentError(f"seed must be a non-negative integer, got {seed!r}")
        if max_accuracy_drop is not _UNSET and max_accuracy_drop is not None:
            if (
                isinstance(max_accuracy_drop, bool)
                or not isinstance(max_accuracy_drop, (int, float))
                or not 0.0 <= float(max_accuracy_drop) <= 1.0
            ):
                raise SearchArgumentError(
                    f"max_accuracy_drop must be a fraction in [0, 1] (0.01 = 1 point) or None, "
                    f"got {max_accuracy_drop!r}"
                )
            max_accuracy_drop = float(max_accuracy_drop)
        if accuracy_confidence is not _UNSET:
            if (
                isinstance(accuracy_confidence, bool)
                or not isinstance(accuracy_confidence, (int, float))
                or not 0.5 <= float(accuracy_confidence) < 1.0
            ):
                raise SearchArgumentError(
                    f"accuracy_confidence must be a probability in [0.5, 1) (0.9 = 90 %), got "
                    f"{accuracy_confidence!r}"
                )
            accuracy_confidence = float(accuracy_confidence)
        if not isinstance(gpus_per_trial, (int, float)) or not 0.0 <= gpus_per_trial <= 8:
            raise SearchArgumentError(f"gpus_per_trial must be in [0, 8], got {gpus_per_trial!r}")
        if study_name is not None and (not isinstance(study_name, str) or not study_name.strip()):
            raise SearchArgumentError(f"study_name must be a non-empty string, got {study_name!r}")
        self.task = task
        self.space = space
        self.storage_url = storage
        self.study_name = study_name or task.name
        self.n_trials = n_trials
        self._concurrency_given = max_concurrent_trials
        self.max_concurrent_trials = 1 if max_concurrent_trials is None else max_concurrent_trials
        self.max_accuracy_drop = max_accuracy_drop
        self.accuracy_confidence = accuracy_confidence
        self.seed = seed
        self.sampler = sampler
        self.gpus_per_trial = float(gpus_per_trial)
        self.ray_address = ray_address
        self.callbacks = list(callbacks)
        if progress is not None and not isinstance(progress, bool):
            raise SearchArgumentError(f"progress must be True, False or None, got {progress!r}")
        self.progress = progress
        self.early_stopping = bool(early_stopping)
        self.seed_configs = bool(seed_configs)
        if isinstance(warm_start, str):
            warm_start = [warm_start]
        self.warm_start = list(warm_start)
        self._lock_given = measurement_lock
        self.measurement_lock = (
            self.max_concurrent_trials > 1 if measurement_lock is None
            else bool(measurement_lock)
        )
        if isinstance(retime_rounds, bool) or not isinstance(retime_rounds, int) or not (
            0 <= retime_rounds <= 100
        ):
            raise SearchArgumentError(
                f"retime_rounds must be an integer in [0, 100] (0 = off), got {retime_rounds!r}"
            )
        self.retime_rounds = retime_rounds
        self.retime_seconds = _retime_seconds(retime_seconds)
        self._storage = open_storage(storage)  # validates the URL before any work
        for name in self.warm_start:
            if find_study(self._storage, name) is None:
                raise SearchArgumentError(
                    f"warm_start study {name!r} does not exist in {redact(storage)}"
                )

    # --------------------------------------------------------------------- public
    @property
    def study(self) -> optuna.Study | None:
        """The Optuna study, once it exists."""
        return find_study(self._storage, self.study_name)

    def run(self) -> ParetoFront:
        """Run (or continue) the study until it has ``n_trials`` finished trials.

        Returns:
            The study's Pareto front.
        """
        study = find_study(self._storage, self.study_name)
        info = self._check_existing(study) if study is not None else None
        if self.space is not None:
            space = self.space
        elif info is not None:
            space = SearchSpace.from_dict(info.space)
        else:
            space = SearchSpace.preset(self.task.space_preset)
        drop = self.max_accuracy_drop
        if drop is _UNSET:
            drop = info.max_accuracy_drop if info else DEFAULT_MAX_ACCURACY_DROP

        if study is not None and info is not None:
            sweep_stale(self._storage, study)
            if len(finished_trials(study)) >= self.n_trials:
                # Finished earlier; its re-timing may have been interrupted or off then.
                front = ParetoFront.from_study(study, info)
                if not self._retime_due(study, front):
                    return front
                with quiet_libraries(), ray_session(self.ray_address):
                    self._retime(study, front)
                return ParetoFront.from_study(study, info)

        self._check_devices(space)
        if info is None:  # a new study: refuse (or drop) operators that would do nothing
            space = preflight(self.task, space, user_space=self.space is not None)
            warning = split_size_warning(
                self.task, drop,
                DEFAULT_ACCURACY_CONFIDENCE if self.accuracy_confidence is _UNSET
                else self.accuracy_confidence,
            )
            if warning is not None:
                logger.warning("%s", warning)
        with quiet_libraries(), ray_session(self.ray_address), self._progress():
            self._check_cluster()
            if info is None:
                baseline = self._measure_baseline(space)
                study, created = create_or_join(
                    self._storage,
                    self.study_name,
                    task=self._task_identity(),
                    space=space.to_dict(),
                    baseline=baseline,
                    max_accuracy_drop=drop,
                    seed=self.seed,
                    version=library_version(),
                    accuracy_confidence=(
                        DEFAULT_ACCURACY_CONFIDENCE if self.accuracy_confidence is _UNSET
                        else self.accuracy_confidence
                    ),
                )
                if created:
                    info = StudyInfo.from_study(study, self.storage_url)
                    profile = stored_profiles(baseline).get(32)
                    hint = None if profile is None else fast_corner_warning(
                        self.task.teacher, space, profile)
                    if hint is not None:
                        logger.warning("%s", hint)
                    self._enqueue_first(study, space, baseline)
                else:  # another process created it meanwhile: it must be the same search
                    info = self._check_existing(study)
            if study is None:  # pragma: no cover - create_or_join returns a study or raises
                raise StudyMismatchError(f"study {self.study_name!r} could not be created")
            for _ in range(_MAX_ROUNDS):
                wait_for_others(self._storage, study, self.n_trials)
                remaining = self.n_trials - len(finished_trials(study))
                if remaining <= 0:
                    break
                completed = self._run_round(study, info, space, remaining)
                if completed == 0:
                    logger.warning("a round of trials completed none; stopping early")
                    break
            front = ParetoFront.from_study(study, info)
            if not self._retime_due(study, front):
                return front
            self._retime(study, front)
        return ParetoFront.from_study(study, info)  # with the re-timed figures

    # -------------------------------------------------------------------- private
    def _progress(self) -> AbstractContextManager[Any]:
        if self.progress is False:
            return nullcontext()
        return Progress(self._storage, self.study_name, self.n_trials, live=self.progress)

    def _check_devices(self, space: SearchSpace) -> None:
        """Refuse settings that cannot run on the requested device, before any work."""
        if self.gpus_per_trial <= 0:
            return
        cpu_only = sorted(set(_quant_bits_values(space)) & {8, 4}, reverse=True)
        if cpu_only:
            raise SearchArgumentError(
                f"quant_bits={cpu_only[0]} runs on CPU only here (int8 dynamic / int4 "
                "weight-only CPU kernels; GPU quantization formats are not implemented yet); "
                "with gpus_per_trial > 0 search quant_bits over [32, 16]"
            )
        if _allocates(space):
            raise SearchArgumentError(
                "bit_budget stores layers int8/int4, which run on CPU only; with "
                "gpus_per_trial > 0 search quant_bits over [32, 16] instead"
            )

    def _check_cluster(self) -> None:
        """A GPU search on a cluster without GPUs would wait forever: refuse it."""
        if self.gpus_per_trial <= 0:
            return
        import ray

        gpus = ray.cluster_resources().get("GPU", 0.0)
        if gpus < self.gpus_per_trial:
            raise SearchArgumentError(
                f"gpus_per_trial={self.gpus_per_trial:g} but the Ray cluster has {gpus:g} GPUs; "
                "use gpus_per_trial=0 (CPU) or join a cluster with GPUs"
            )
        if self._concurrency_given is None:  # as many trials as the GPUs hold
            self.max_concurrent_trials = gpus_concurrency(gpus, self.gpus_per_trial)
            if self._lock_given is None:
                self.measurement_lock = self.max_concurrent_trials > 1
            logger.info("%d trials at once (%g GPUs / gpus_per_trial=%g)",
                        self.max_concurrent_trials, gpus, self.gpus_per_trial)

    def _enqueue_first(
        self, study: optuna.Study, space: SearchSpace, baseline: dict[str, Any]
    ) -> None:
        if self.seed_configs:
            slower = slower_precisions(baseline)
            offered = set(_quant_bits_values(space))
            for bits, ratio in slower.items():
                # Beside an allocation, a precision is also uniform where quant_bits offers it.
                allocated_only = _allocates(space) and bits not in offered
                logger.warning(
                    "%s ran %.1fx slower than fp32 on the teacher on this hardware (%s); %s",
                    f"int{bits} (every layer)" if allocated_only else f"quant_bits={bits}",
                    ratio, baseline.get("hardware", "?"),
                    "the allocation may still choose it per layer; its seeds that prune are "
                    "seeded at fp32 (32 bits, where the bit_budget range reaches it)"
                    if allocated_only
                    else "it stays searchable but is not among the seed configs",
                )
            enqueue(study, seed_configs(space, skip_bits=tuple(slower),
                                        uniform_budgets=self._uniform_budgets(space)), "seed")
        if self.warm_start:
            enqueue(study, warm_start_configs(self._storage, self.warm_start, space), "warm_start")

    def _uniform_budgets(self, space: SearchSpace) -> dict[int, float]:
        """What uniform int8 and int4 take in effective bits on the teacher
        (``objectives.uniform_budget``), for the seeds of a space that searches
        ``bit_budget``; empty otherwise."""
        if not _allocates(space):
            return {}
        try:
            return {b: uniform_budget(self.task.teacher, b) for b in (8, 4)}
        except TaskError:  # refused by preflight before it gets here; seeds keep 8.5/4.5
            return {}

    def _retime_due(self, study: optuna.Study, front: ParetoFront) -> bool:
        """Whether ``_retime`` has work: re-timing is on, the front is not empty and the
        stored figures (``ATTR_RETIMED``) do not cover exactly this front."""
        if self.retime_rounds <= 0:
            return False
        stored = study.user_attrs.get(ATTR_RETIMED) or {}
        numbers = sorted(c.trial for c in front)
        return bool(numbers) and sorted(int(k) for k in stored.get("trials", {})) != numbers

    def _retime(self, study: optuna.Study, front: ParetoFront) -> None:
        """Time ``front``'s points alone, interleaved with the teacher; store the figures
        on the study (``ATTR_RETIMED``). Callers check ``_retime_due`` first.

        Always under the machine's measurement lock (``DEFAULT_LOCK_PATH``), whatever
        ``measurement_lock`` says for trials: another driver's trials on the machine
        may be running. A failure is logged (one warning line) and leaves the front
        with the search's figures: the search's result is never lost to it.
        """
        try:
            teacher_ms, config_ms, hardware = retime_remote(
                self.task, [dict(c.compression) for c in front],
                gpus_per_trial=self.gpus_per_trial, measurement_lock=str(DEFAULT_LOCK_PATH),
                rounds=self.retime_rounds, min_seconds=self.retime_seconds,
            )
        except Exception as exc:  # the search's result stands without the re-timing
            logger.warning(_RETIME_FAILED.format(error=_one_line_error(exc)))
            return
        study.set_user_attr(ATTR_RETIMED, {
            "rounds": self.retime_rounds,
            "teacher_ms": teacher_ms,
            "hardware": hardware,
            "trials": {str(c.trial): ms for c, ms in zip(front, config_ms, strict=True)},
        })

    def _lock_path(self) -> str | None:
        return str(DEFAULT_LOCK_PATH) if self.measurement_lock else None

    def _task_identity(self) -> dict[str, Any]:
        return {
            "name": self.task.name,
            "fingerprint": self.task.fingerprint,
            "spec": dict(self.task.spec),
        }

    def _check_existing(self, study: optuna.Study) -> StudyInfo:
        info = StudyInfo.from_study(study, self.storage_url) if study.user_attrs else None
        if info is None:
            raise StudyMismatchError(
                f"study {self.study_name!r} in {redact(self.storage_url)} was not created by "
                "slimsearch; use another study name"
            )
        fp = info.task.get("fingerprint")
        if fp != self.task.fingerprint:
            raise StudyMismatchError(
                f"study {self.study_name!r} was created for task {info.task.get('name')!r} "
                f"(fingerprint {fp}); this task {self.task.name!r} has fingerprint "
                f"{self.task.fingerprint}. Use another study name"
            )
        if self.space is not None and self.space.to_dict() != dict(info.space):
            raise StudyMismatchError(
                f"study {self.study_name!r} was created with another search space; resume it "
                "without a space (the stored one is used) or use another study name"
            )
        drop = self.max_accuracy_drop
        if drop is not _UNSET and drop != info.max_accuracy_drop:
            raise StudyMismatchError(
                f"study {self.study_name!r} was created with max_accuracy_drop="
                f"{info.max_accuracy_drop}; resume it with that value or use another study name"
            )
        confidence = self.accuracy_confidence
        if confidence is not _UNSET and confidence != info.accuracy_confidence:
            if info.accuracy_confidence is None:
                raise StudyMismatchError(
                    f"study {self.study_name!r} was created before accuracy_confidence "
                    "existed (its constraint is judged on the point estimate); resume it "
                    "without accuracy_confidence (--accuracy-confidence) or use another "
                    "study name"
                )
            raise StudyMismatchError(
                f"study {self.study_name!r} was created with accuracy_confidence="
                f"{info.accuracy_confidence}; resume it with that value or use another study "
                "name"
            )
        if ATTR_BASELINE not in study.user_attrs:
            raise StudyMismatchError(f"study {self.study_name!r} has no baseline; recreate it")
        return info

    def _resources(self) -> dict[str, float]:
        res: dict[str, float] = {"cpu": float(self.task.threads)}
        if self.gpus_per_trial > 0:
            res["gpu"] = self.gpus_per_trial
        return res

    def _measure_baseline(self, space: SearchSpace) -> dict[str, Any]:
        return measure_baseline_remote(
            self.task, gpus_per_trial=self.gpus_per_trial, measurement_lock=self._lock_path(),
            precisions=space_precisions(space) if self.seed_configs else (),
            bases=_allocation_bases(space),
        )

    def _run_round(
        self, study: optuna.Study, info: StudyInfo, space: SearchSpace, remaining: int
    ) -> int:
        sampler = self.sampler or optuna.samplers.TPESampler(
            seed=mixed_seed(self.seed, len(study.get_trials(deepcopy=False))),
            constant_liar=True,
        )
        return run_round(
            task=self.task,
            study=optuna.load_study(
                study_name=study.study_name, storage=self._storage, sampler=sampler
            ),
            storage=self._storage,
            storage_url=self.storage_url,
            info=info,
            distributions=space.distributions(),
            fixed=space.fixed_values(),
            conditions=space.conditions(),
            n_trials=self.n_trials,
            remaining=remaining,
            max_concurrent_trials=self.max_concurrent_trials,
            resources=self._resources(),
            gpus_per_trial=self.gpus_per_trial,
            early_stopping=self.early_stopping,
            measurement_lock=self._lock_path(),
            callbacks=self.callbacks,
        )


RETIME_SECONDS_ENV = "SLIMSEARCH_RETIME_SECONDS"


def _retime_seconds(value: float | None) -> float:
    """``retime_seconds`` resolved (None: ``$SLIMSEARCH_RETIME_SECONDS``, else
    ``objectives.RETIME_MIN_SECONDS``) and checked: a finite number in [0, 600]."""
    source = "retime_seconds"
    if value is None:
        text = os.environ.get(RETIME_SECONDS_ENV)
        if text is None:
            return RETIME_MIN_SECONDS
        source = f"${RETIME_SECONDS_ENV}"
        try:
            value = float(text)
        except ValueError:
            value = text  # type: ignore[assignment]  # refused below, named as given
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        0.0 <= float(value) <= 600.0
    ):
        raise SearchArgumentError(
            f"{source} must be a number of seconds in [0, 600] (0 = rounds only), "
            f"got {value!r}"
        )
    return float(value)


def _one_line_error(exc: BaseException) -> str:
    """``Type: message`` of ``exc`` on one line — of the exception a Ray task raised,
    when ``exc`` wraps one (``RayTaskError.cause``)."""
    cause = getattr(exc, "cause", None)
    err = cause if isinstance(cause, BaseException) else exc
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SearchArgumentError(f"{name} must be a positive integer, got {value!r}")


def _allocation_bases(space: SearchSpace) -> tuple[int, ...]:
    """The bases (``quant_bits`` values) trials of ``space`` allocate on; () without a
    ``bit_budget``. Uniform int8/int4 beside them (``SearchSpace.conditions``) are not
    bases: those trials allocate nothing."""
    if not _allocates(space):
        return ()
    bases = set(_quant_bits_values(space)) & set(ALLOCATION_BASES)
    return tuple(sorted(bases, reverse=True))


def _quant_bits_values(space: SearchSpace) -> list[int]:
    """The ``quant_bits`` values trials of ``space`` may get (32 when it is not in it)."""
    bits = space.parameters.get("quant_bits")
    return [int(v) for v in getattr(bits, "choices", None) or [getattr(bits, "value", 32)]]


def _allocates(space: SearchSpace) -> bool:
    """Whether trials of ``space`` allocate per-layer precision (``bit_budget`` > 0)."""
    param = space.parameters.get("bit_budget")
    if param is None:
        return False
    value = getattr(param, "value", None)
    return value is None or float(value) > 0


def gpus_concurrency(gpus: float, gpus_per_trial: float) -> int:
    """Trials that fit on ``gpus`` GPUs at ``gpus_per_trial`` each (at least 1)."""
    return max(1, int(gpus / gpus_per_trial + 1e-9))
