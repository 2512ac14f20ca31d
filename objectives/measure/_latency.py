"""Wall-clock latency of one forward pass, timed alone on the machine.

Latency contract: the median over ``repeats`` (≥ 30) samples of the wall-clock time of
one forward pass of the final artifact, after ``warmup`` untimed passes, with a fixed
intra-op thread count, in ``torch.inference_mode``. A sample times ``inner`` back-to-back
passes and divides by ``inner``, where ``inner`` is calibrated so a sample lasts at least
``min_sample_ms`` — so sub-millisecond models are not dominated by timer noise. On CUDA
samples are timed with CUDA events (recorded on the stream, synchronised before reading).
Timing holds the machine's measurement lock exclusively (see ``MeasurementLock``).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from objectives._task import Inputs, forward, to_device
from objectives.measure._lock import measuring

MIN_REPEATS = 30


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one forward pass, in milliseconds."""

    median_ms: float
    p90_ms: float
    cv: float
    repeats: int
    inner: int
    threads: int
    batch_size: int
    device: str


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def measure_latency(
    model: nn.Module,
    inputs: Inputs,
    *,
    threads: int = 1,
    device: torch.device | str = "cpu",
    repeats: int = MIN_REPEATS,
    warmup: int = 5,
    min_sample_ms: float = 2.0,
) -> LatencyStats:
    """Measure the forward latency of ``model`` on ``inputs`` (see the module contract)."""
    repeats = max(int(repeats), MIN_REPEATS)
    dev = torch.device(device)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with measuring():
            model.eval()
            x = to_device(inputs, dev)
            for _ in range(max(warmup, 1)):
                forward(model, x)
            _sync(dev)
            t0 = time.perf_counter()
            forward(model, x)
            _sync(dev)
            one = max(time.perf_counter() - t0, 1e-7)
            inner = int(min(max(1, (min_sample_ms / 1000.0) // one + 1), 1000))
            samples = []
            for _ in range(repeats):
                if dev.type == "cuda":
                    start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
                    start.record()
                    for _ in range(inner):
                        forward(model, x)
                    end.record()
                    end.synchronize()
                    samples.append(start.elapsed_time(end) / inner)
                    continue
                t0 = time.perf_counter()
                for _ in range(inner):
                    forward(model, x)
                samples.append((time.perf_counter() - t0) * 1000.0 / inner)
    finally:
        torch.set_num_threads(previous_threads)
    samples.sort()
    median = statistics.median(samples)
    mean = statistics.fmean(samples)
    cv = statistics.pstdev(samples) / mean if mean > 0 else 0.0
    rows = next(iter(x.values())).shape[0] if isinstance(x, dict) else x.shape[0]
    return LatencyStats(
        median_ms=median,
        p90_ms=samples[min(len(samples) - 1, int(0.9 * len(samples)))],
        cv=cv,
        repeats=repeats,
        inner=inner,
        threads=threads,
        batch_size=int(rows),
        device=str(dev),
    )
