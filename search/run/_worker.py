"""Code that runs inside Ray workers: one trial, or the baseline measurement."""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch

from objectives import (
    RETIME_MIN_SECONDS,
    CompressionConfig,
    EarlyStopping,
    FinishedTrial,
    LayerProfile,
    MeasurementLock,
    Task,
    TrialFailed,
    TrialResult,
    activate_measurement_lock,
    describe_hardware,
    device_synchronizer,
    evaluate,
    evaluate_teacher,
    lock_path,
    precision_latencies,
    retime,
    task_profile,
)
from search.run._messages import TIMINGS, EarlyStoppingSpec, TrialReport
from search.study import is_feasible, open_storage

_LOCKS: dict[str, MeasurementLock] = {}
_STORAGES: dict[str, Any] = {}


def use_measurement_lock(path: str | None, device: str = "cpu") -> None:
    """Make this worker process time latency under the lock for ``device``: the
    machine-wide lock at ``path`` on the CPU, that GPU's own lock (``path`` + its UUID,
    holds synchronised before release) on a GPU — see ``objectives.lock_path``."""
    if path is None:
        activate_measurement_lock(None)
        return
    key = str(lock_path(path, device))
    if key not in _LOCKS:
        _LOCKS[key] = MeasurementLock(key, synchronize=device_synchronizer(device))
    activate_measurement_lock(_LOCKS[key])


def finished_trials(spec: EarlyStoppingSpec) -> list[FinishedTrial]:
    """Objectives of the study's COMPLETE, feasible trials (for early stopping).

    Latency is each trial's raw median (``latency_raw_ms``, where recorded): a running
    trial's pre-fine-tune probe is a raw median too, not read beside the teacher."""
    import optuna

    if spec.storage_url not in _STORAGES:  # one engine per worker process, reused
        _STORAGES[spec.storage_url] = open_storage(spec.storage_url)
    study = optuna.load_study(study_name=spec.study_name, storage=_STORAGES[spec.storage_url])
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if is_feasible(t):
            acc, lat, size = t.values
            lat = t.user_attrs.get("latency_raw_ms", lat)
            out.append(FinishedTrial(float(acc), float(lat), int(size)))
    return out


GPU_MISSING = (
    "this worker was given gpus_per_trial={gpus:g} but sees no CUDA device "
    "(torch {torch} {build}; CUDA_VISIBLE_DEVICES={visible!r}); refusing to run it on the CPU, "
    "which would mix devices in one front — install a CUDA build of torch on the GPU nodes, or "
    "search with gpus_per_trial=0"
)


def worker_device(gpus: float) -> str:
    """``cuda`` when this worker was given a GPU, else ``cpu``.

    Raises:
        TrialFailed: the worker was given a GPU (``gpus > 0``) but sees none — a trial
            run on the CPU instead would put CPU latencies into a GPU front.
    """
    if gpus <= 0:
        return "cpu"
    if not torch.cuda.is_available():
        import os

        raise TrialFailed(GPU_MISSING.format(
            gpus=gpus, torch=torch.__version__,
            build="without CUDA" if torch.version.cuda is None else f"CUDA {torch.version.cuda}",
            visible=os.environ.get("CUDA_VISIBLE_DEVICES"),
        ))
    return "cuda"


def _node_id() -> str:
    """The Ray node this worker runs on ("" outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:
        return ""


def report_of(
    result: TrialResult,
    *,
    seed: int,
    device: str,
    baseline_latency_ms: float | None = None,
) -> TrialReport:
    """The ``TrialReport`` of a measured (or early-stopped) ``result``.

    With ``baseline_latency_ms`` and a teacher timed beside the artifact
    (``result.reference_latency_ms``), the latency objective is the artifact's latency
    relative to that teacher, times the baseline: the machine's speed when the trial
    timed (which drifts and switches between regimes on a shared CPU, and another
    trial's work may run beside it) divides out, and the baseline's stays. The raw
    median is kept as ``latency_raw_ms``.
    """
    unknown = set(result.timings) - set(TIMINGS)
    if unknown:  # a new phase needs a field in TrialReport, or it would be dropped
        raise KeyError(f"TrialReport has no field for the timings {sorted(unknown)}")
    latency_ms = result.latency_ms
    reference = result.reference_latency_ms
    anchored = (
        baseline_latency_ms is not None and reference is not None
        and math.isfinite(baseline_latency_ms) and baseline_latency_ms > 0
        and math.isfinite(reference) and reference > 0
    )
    if anchored:
        latency_ms = result.latency_ms * baseline_latency_ms / reference
    return TrialReport(
        accuracy=result.accuracy,
        latency_ms=latency_ms,
        latency_raw_ms=result.latency_ms if anchored else None,
        reference_latency_ms=reference,
        size_bytes=float(result.size_bytes),
        test_accuracy=result.test_accuracy,
        num_parameters=result.num_parameters,
        params_before=result.params_before or None,
        quant_coverage=result.quant_coverage,
        uncovered_layers=", ".join(result.uncovered_layers) or None,
        hardware=result.hardware or None,
        perplexity=result.perplexity,
        layers_removed=result.layers_removed,
        heads_kept=result.heads_kept,
        layer_bits=None if result.layer_bits is None
        else json.dumps(result.layer_bits, sort_keys=True),
        effective_bits=result.effective_bits,
        layer_time_share=result.layer_time_share,
        accuracy_delta=result.accuracy_delta,
        accuracy_delta_se=result.accuracy_delta_se,
        confirm_accuracy=result.confirm_accuracy,
        confirm_delta=result.confirm_delta,
        confirm_delta_se=result.confirm_delta_se,
        prefill_ms=result.latencies.get("prefill_ms"),
        decode_ms_per_token=result.latencies.get("decode_ms_per_token"),
        latency_cv=None if result.latency is None else result.latency.cv,
        latency_p90_ms=None if result.latency is None else result.latency.p90_ms,
        epoch_accuracies=tuple(result.epoch_accuracies),
        stopped=result.stopped,
        seed=seed,
        device=device,
        node=_node_id(),
        **{k: float(v) for k, v in result.timings.items()},
    )


def run_trial(
    config: Mapping[str, Any],
    *,
    task: Task,
    fixed: Mapping[str, Any],
    seed: int,
    gpus: float = 0.0,
    early_stopping: EarlyStoppingSpec | None = None,
    measurement_lock: str | None = None,
    layer_profiles: Mapping[int, Mapping[str, Any]] | None = None,
    baseline_latency_ms: float | None = None,
) -> None:
    """Ray Tune function trainable: compress with ``fixed | config`` and report a ``TrialReport``.

    Any exception is reported as a failed ``TrialReport`` (message, type, traceback; the
    searcher records the trial as FAIL with them) instead of crashing the worker, so the
    search goes on. A worker that dies outright is retried by Tune's ``FailureConfig``.

    Args:
        early_stopping: Stop hopeless trials early (reported with ``stopped``).
        measurement_lock: Path of the machine-wide lock that keeps latency timing free
            of other trials' work (see ``objectives.MeasurementLock``); None: no lock.
        layer_profiles: The study's stored per-layer sensitivity profiles by base
            (``LayerProfile.to_dict``) that ``bit_budget`` trials allocate by, the one of
            the trial's ``quant_bits``; a base not stored is measured here if needed.
        baseline_latency_ms: The study's baseline latency: the objective is read
            relative to the teacher timed beside the artifact (``report_of``).
    """
    from ray import tune

    entered = time.perf_counter()
    try:
        device = worker_device(gpus)  # a missing GPU fails the trial with its reason
        use_measurement_lock(measurement_lock, device)
        cfg = CompressionConfig(**{**fixed, **config})
        rule = None
        if early_stopping is not None:
            rule = EarlyStopping(
                baseline_accuracy=early_stopping.baseline_accuracy,
                max_accuracy_drop=early_stopping.max_accuracy_drop,
                finished=finished_trials(early_stopping),
            )
        stored = (layer_profiles or {}).get(cfg.quant_bits) if cfg.bit_budget > 0 else None
        profile = None if stored is None else LayerProfile.from_dict(stored)
        result = evaluate(task, cfg, seed=seed, device=device, early_stopping=rule,
                          layer_profile=profile)
        report = report_of(result, seed=seed, device=device,
                           baseline_latency_ms=baseline_latency_ms)
    except Exception as exc:  # recorded on the trial, not raised
        if isinstance(exc, torch.OutOfMemoryError) and torch.cuda.is_available():
            torch.cuda.empty_cache()
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]
        if _out_of_memory(exc):
            message = (
                "out of memory (lower batch_size in the space, run fewer trials at once "
                f"with --workers, or give each trial more memory): {message}"
            )[:2000]
        report = TrialReport.failed(message, type(exc).__name__, traceback.format_exc()[-4000:])
    report = replace(report, trial_fn_s=time.perf_counter() - entered)
    tune.report(report.to_metrics())


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (GPU or CPU) rather than a bug."""
    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text
    )


def measure_baseline(
    task: Task,
    gpus: float = 0.0,
    measurement_lock: str | None = None,
    precisions: tuple[int, ...] = (),
    bases: tuple[int, ...] = (),
) -> tuple[TrialReport, dict[int, float], dict[int, dict[str, Any]]]:
    """The teacher's metrics, measured exactly as a trial's (run as a Ray task), its
    median latency (ms) at each of ``precisions`` on this worker's device (the probe),
    and its per-layer sensitivity profile (``task_profile``) on each of ``bases``."""
    device = worker_device(gpus)
    use_measurement_lock(measurement_lock, device)
    report = report_of(evaluate_teacher(task, device=device), seed=0, device=device)
    profiles = {b: task_profile(task, base=b).to_dict() for b in bases}
    return report, precision_latencies(task, precisions, device=device), profiles


def retime_configs(
    task: Task,
    configs: list[Mapping[str, Any]],
    gpus: float = 0.0,
    measurement_lock: str | None = None,
    rounds: int = 3,
    min_seconds: float = RETIME_MIN_SECONDS,
) -> tuple[float, list[float], str]:
    """``objectives.retime`` of ``configs`` on this worker's device (run as a Ray task):
    the teacher's and each config's median ms, alone and interleaved, and the hardware."""
    device = worker_device(gpus)
    use_measurement_lock(measurement_lock, device)
    teacher_ms, config_ms = retime(
        task, [CompressionConfig(**c) for c in configs], rounds=rounds, device=device,
        min_seconds=min_seconds,
    )
    return teacher_ms, config_ms, describe_hardware(device, task.threads)
