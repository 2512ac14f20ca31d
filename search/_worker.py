"""Code that runs inside Ray workers: one trial, or the baseline measurement."""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Mapping
from typing import Any

import torch

from objectives import (
    CompressionConfig,
    EarlyStopping,
    FinishedTrial,
    MeasurementLock,
    Task,
    TrialResult,
    activate_measurement_lock,
    evaluate,
    evaluate_teacher,
)

_LOCKS: dict[str, MeasurementLock] = {}
_STORAGES: dict[str, Any] = {}


def use_measurement_lock(path: str | None) -> None:
    """Make this worker process time latency under the machine-wide lock at ``path``."""
    if path is None:
        activate_measurement_lock(None)
        return
    if path not in _LOCKS:
        _LOCKS[path] = MeasurementLock(path)
    activate_measurement_lock(_LOCKS[path])


def finished_trials(storage_url: str, study_name: str) -> list[FinishedTrial]:
    """Objectives of the study's COMPLETE, feasible trials (for early stopping)."""
    import optuna

    from search._storage import open_storage

    if storage_url not in _STORAGES:  # one engine per worker process, reused by its trials
        _STORAGES[storage_url] = open_storage(storage_url)
    study = optuna.load_study(study_name=study_name, storage=_STORAGES[storage_url])
    out = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        if all(v <= 0 for v in t.constraints.values()):
            acc, lat, size = t.values
            out.append(FinishedTrial(float(acc), float(lat), int(size)))
    return out


def worker_device(gpus: float) -> str:
    """``cuda`` when this worker was given a GPU and one is visible, else ``cpu``."""
    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"


def _node_id() -> str:
    """The Ray node this worker runs on ("" outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:
        return ""


def result_to_report(result: TrialResult, *, seed: int, device: str) -> dict[str, Any]:
    """The flat dict a trial reports to Ray Tune."""
    report: dict[str, Any] = {
        **result.metrics(),
        "num_parameters": result.num_parameters,
        "seed": seed,
        "device": device,
        "node": _node_id(),
    }
    if result.latency is not None:
        report["latency_cv"] = result.latency.cv
        report["latency_p90_ms"] = result.latency.p90_ms
    if result.epoch_accuracies:
        report["epoch_accuracies"] = list(result.epoch_accuracies)
    if result.stopped is not None:
        report["stopped"] = result.stopped
    report.update({k: float(v) for k, v in result.timings.items()})
    return report


def run_trial(
    config: Mapping[str, Any],
    *,
    task: Task,
    fixed: Mapping[str, Any],
    seed: int,
    gpus: float = 0.0,
    early_stopping: Mapping[str, Any] | None = None,
    measurement_lock: str | None = None,
) -> None:
    """Ray Tune function trainable: compress with ``fixed | config`` and report metrics.

    Any exception is reported as ``{"error": "...", "error_type": ...}`` (the searcher
    records the trial as FAIL with that message) instead of crashing the worker, so the
    search goes on. A worker that dies outright is retried by Tune's ``FailureConfig``.

    Args:
        early_stopping: ``{"baseline_accuracy", "max_accuracy_drop", "storage",
            "study"}`` to stop hopeless trials early (reported with ``stopped``).
        measurement_lock: Path of the machine-wide lock that keeps latency timing free
            of other trials' work (see ``objectives.MeasurementLock``); None: no lock.
    """
    from ray import tune

    entered = time.perf_counter()
    device = worker_device(gpus)
    use_measurement_lock(measurement_lock)
    try:
        cfg = CompressionConfig(**{**fixed, **config})
        rule = None
        if early_stopping is not None:
            rule = EarlyStopping(
                baseline_accuracy=float(early_stopping["baseline_accuracy"]),
                max_accuracy_drop=early_stopping["max_accuracy_drop"],
                finished=finished_trials(early_stopping["storage"], early_stopping["study"]),
            )
        result = evaluate(task, cfg, seed=seed, device=device, early_stopping=rule)
        report = result_to_report(result, seed=seed, device=device)
        if result.stopped is None:
            for m in ("accuracy", "latency_ms", "size_bytes"):
                if not math.isfinite(report[m]):
                    raise FloatingPointError(f"{m} is {report[m]}")
    except Exception as exc:  # recorded on the trial, not raised
        if isinstance(exc, torch.OutOfMemoryError):
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]
        if _out_of_memory(exc):
            message = (
                "out of memory (lower batch_size in the space, run fewer trials at once "
                f"with --workers, or give each trial more memory): {message}"
            )[:2000]
        report = {
            "accuracy": float("nan"),
            "latency_ms": float("nan"),
            "size_bytes": float("nan"),
            "error": message,
            "error_type": type(exc).__name__,
            "traceback": traceback.format_exc()[-4000:],
        }
    report["trial_fn_s"] = time.perf_counter() - entered
    tune.report(report)


def _out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (GPU or CPU) rather than a bug."""
    if isinstance(exc, MemoryError | torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text
    )


def measure_baseline(
    task: Task, gpus: float = 0.0, measurement_lock: str | None = None
) -> dict[str, Any]:
    """The teacher's metrics, measured exactly as a trial's (run as a Ray task)."""
    device = worker_device(gpus)
    use_measurement_lock(measurement_lock)
    result = evaluate_teacher(task, device=device)
    return {
        **result_to_report(result, seed=0, device=device),
        "threads": task.threads,
        "latency_batch_size": task.latency_batch_size,
    }
