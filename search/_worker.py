"""Code that runs inside Ray workers: one trial, or the baseline measurement."""

from __future__ import annotations

import math
import traceback
from collections.abc import Mapping
from typing import Any

import torch

from objectives import CompressionConfig, Task, TrialResult, evaluate, evaluate_teacher


def worker_device(gpus: float) -> str:
    """``cuda`` when this worker was given a GPU and one is visible, else ``cpu``."""
    return "cuda" if gpus > 0 and torch.cuda.is_available() else "cpu"


def result_to_report(result: TrialResult, *, seed: int, device: str) -> dict[str, Any]:
    """The flat dict a trial reports to Ray Tune."""
    report: dict[str, Any] = {
        **result.metrics(),
        "num_parameters": result.num_parameters,
        "latency_cv": result.latency.cv,
        "latency_p90_ms": result.latency.p90_ms,
        "seed": seed,
        "device": device,
    }
    report.update({k: float(v) for k, v in result.timings.items()})
    return report


def run_trial(
    config: Mapping[str, Any],
    *,
    task: Task,
    fixed: Mapping[str, Any],
    seed: int,
    gpus: float = 0.0,
) -> None:
    """Ray Tune function trainable: compress with ``fixed | config`` and report metrics.

    Any exception is reported as ``{"error": "...", "error_type": ...}`` (the searcher
    records the trial as FAIL with that message) instead of crashing the worker, so the
    search goes on. A worker that dies outright is retried by Tune's ``FailureConfig``.
    """
    from ray import tune

    device = worker_device(gpus)
    try:
        cfg = CompressionConfig(**{**fixed, **config})
        result = evaluate(task, cfg, seed=seed, device=device)
        report = result_to_report(result, seed=seed, device=device)
        for m in ("accuracy", "latency_ms", "size_bytes"):
            if not math.isfinite(report[m]):
                raise FloatingPointError(f"{m} is {report[m]}")
    except Exception as exc:  # recorded on the trial, not raised
        if isinstance(exc, torch.OutOfMemoryError):
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]
        report = {
            "accuracy": float("nan"),
            "latency_ms": float("nan"),
            "size_bytes": float("nan"),
            "error": message,
            "error_type": type(exc).__name__,
            "traceback": traceback.format_exc()[-4000:],
        }
    tune.report(report)


def measure_baseline(task: Task, gpus: float = 0.0) -> dict[str, Any]:
    """The teacher's metrics, measured exactly as a trial's (run as a Ray task)."""
    device = worker_device(gpus)
    result = evaluate_teacher(task, device=device)
    return {
        **result_to_report(result, seed=0, device=device),
        "threads": task.threads,
        "latency_batch_size": task.latency_batch_size,
    }
