"""One round of trials on Ray Tune, and the Ray session a search runs in."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import optuna

from objectives import Task, TrialFailed
from search.run._messages import EarlyStoppingSpec
from search.study import StudyInfo, absolute_sqlite

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.storages import RDBStorage
    from ray.tune import Callback


def run_round(
    *,
    task: Task,
    study: optuna.Study,
    storage: RDBStorage,
    storage_url: str,
    info: StudyInfo,
    distributions: Mapping[str, BaseDistribution],
    fixed: Mapping[str, Any],
    conditions: Mapping[str, tuple[str, tuple[Any, ...]]] | None = None,
    n_trials: int,
    remaining: int,
    max_concurrent_trials: int,
    resources: Mapping[str, float],
    gpus_per_trial: float,
    early_stopping: bool,
    measurement_lock: str | None,
    callbacks: Sequence[Callback] = (),
) -> int:
    """Run up to ``remaining`` trials of ``study`` on Ray Tune; return how many finished.

    ``study`` must be loaded with the sampler for this round. Every trial is asked from
    and told to the study by a ``StudySearcher``; Tune's own result files are written
    to a temporary directory and removed (results are read from the study).

    Returns:
        The trials of this round that finished (COMPLETE or PRUNED).
    """
    from ray import tune

    from search.run._searcher import HeartbeatCallback, StudySearcher
    from search.run._worker import run_trial

    searcher = StudySearcher(
        study=study,
        storage=storage,
        space=dict(distributions),
        baseline_accuracy=float(info.baseline["accuracy"]),
        max_accuracy_drop=info.max_accuracy_drop,
        n_trials=n_trials,
        accuracy_confidence=info.accuracy_confidence,
        conditions=conditions,
    )
    stopping = (
        EarlyStoppingSpec(
            baseline_accuracy=float(info.baseline["accuracy"]),
            max_accuracy_drop=info.max_accuracy_drop,
            storage_url=absolute_sqlite(storage_url),
            study_name=study.study_name,
        )
        if early_stopping
        else None
    )
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial,
            task=task,
            fixed=dict(fixed),
            seed=info.seed,
            gpus=gpus_per_trial,
            early_stopping=stopping,
            measurement_lock=measurement_lock,
            layer_profiles=stored_profiles(info.baseline),
            baseline_latency_ms=float(info.baseline["latency_ms"]),
        ),
        dict(resources),
    )
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no per-experiment banner
    results_dir = tempfile.mkdtemp(prefix="slimsearch-tune-")
    try:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=remaining,
                max_concurrent_trials=max_concurrent_trials,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=f"slimsearch-{study.study_name}",
                storage_path=results_dir,
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=1),
                callbacks=[HeartbeatCallback(searcher), *callbacks],
            ),
        )
        # We read results from the study, not from Tune's result files (whose
        # per-trial loggers are disabled for speed): silence Tune's complaint.
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
        tuner.fit()
    finally:
        searcher.close()  # its trials left RUNNING (an interrupt) may now be swept
        shutil.rmtree(results_dir, ignore_errors=True)
    return searcher.completed + searcher.pruned


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Use the running Ray, or for the block start a local one or join ``address``.

    With no ``address`` (and no ``RAY_ADDRESS`` in the environment) a new local instance
    is started, never a cluster that happens to run on the machine.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if address:
        kwargs["address"] = address
    elif not os.environ.get("RAY_ADDRESS"):
        # Without an address Ray would join any cluster already started on this machine
        # (`ray start`, another program's cluster); a search without --ray-address runs on
        # its own local instance instead.
        kwargs["address"] = "local"
    ray.init(**kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def measure_baseline_remote(
    task: Task,
    *,
    gpus_per_trial: float,
    measurement_lock: str | None,
    precisions: tuple[int, ...] = (),
    bases: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Measure the teacher in a Ray worker exactly as trials are measured.

    Returns:
        The baseline as stored on the study: the report's measurements plus the task's
        ``threads`` and ``latency_batch_size``, and ``precision_latency_ms``: the
        teacher's latency at each of ``precisions`` (keys are the bit-widths as strings).
        With ``bases``, also the teacher's per-layer sensitivity to quantization on each
        base (``objectives.task_profile``; keys in ``PROFILE_KEYS``), which trials
        allocate ``bit_budget`` by; stored on the study, so a resumed study reuses it.
    """
    import ray

    from search.run._worker import measure_baseline

    remote = ray.remote(measure_baseline).options(
        num_cpus=task.threads, num_gpus=gpus_per_trial, max_retries=1
    )
    try:
        report, probe, profiles = ray.get(
            remote.remote(task, gpus_per_trial, measurement_lock, precisions, bases)
        )
    except TrialFailed as exc:  # e.g. a GPU worker that sees no GPU: nothing is written
        from search._errors import SearchArgumentError

        raise SearchArgumentError(
            f"the teacher could not be measured: {getattr(exc, 'cause', None) or exc}"
        ) from None
    return {
        **report.measurements(),
        "threads": task.threads,
        "latency_batch_size": task.latency_batch_size,
        "precision_latency_ms": {str(b): ms for b, ms in sorted(probe.items(), reverse=True)},
        **{PROFILE_KEYS[b]: p for b, p in profiles.items()},
    }


PROFILE_KEYS = {32: "layer_profile", 16: "layer_profile_16"}
"""The baseline's key of the layer profile measured on each base (32: as studies stored
it before bf16 bases existed)."""


def stored_profiles(baseline: Mapping[str, Any]) -> dict[int, Mapping[str, Any]]:
    """The layer profiles a study's baseline holds, by base."""
    return {b: baseline[k] for b, k in PROFILE_KEYS.items() if k in baseline}


def retime_remote(
    task: Task,
    configs: list[Mapping[str, Any]],
    *,
    gpus_per_trial: float,
    measurement_lock: str | None,
    rounds: int,
    min_seconds: float,
) -> tuple[float, list[float], str]:
    """``search.run._worker.retime_configs`` in a Ray worker (the trials' device)."""
    import ray

    from search.run._worker import retime_configs

    remote = ray.remote(retime_configs).options(
        num_cpus=task.threads, num_gpus=gpus_per_trial, max_retries=1
    )
    return ray.get(remote.remote(task, configs, gpus_per_trial, measurement_lock, rounds,
                                 min_seconds))
