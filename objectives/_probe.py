"""The hardware probe: how fast the teacher runs at each precision on this device.

Whether a precision is faster than fp32 is a property of the hardware (bf16 is ~3x faster
with native bf16 units and ~10x slower without them; int8 kernels vary with AVX-512 and
VNNI). Before a search starts, the teacher itself is timed at each precision the space
holds — same inputs, threads and timing as a trial — so the search can tell which
precisions pay off here, without guessing from the CPU's name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

from objectives._config import CompressionConfig
from objectives._errors import TaskError
from objectives._task import Task

CPU_ONLY_BITS = (8, 4)


PROBE_CLEAR = (0.7, 1.4)
"""A precision whose first pass is outside this range of fp32's (times fp32) is judged on
that pass; inside it, fp32 and it are timed in ``PROBE_ROUNDS`` interleaved rounds."""

PROBE_ROUNDS = 3


def precision_latencies(
    task: Task, bits: Iterable[int], *, device: torch.device | str = "cpu"
) -> dict[int, float]:
    """Median latency (ms) of the unpruned teacher at each of ``bits`` on ``device``.

    The model at each precision is built exactly as a trial builds it (``skeleton``:
    the teacher's structure and weights, quantized), and timed like a trial's artifact
    (``task_latency``: the task's latency objective). Precisions that cannot run on
    ``device`` (int8/int4 on a GPU) or that the model refuses are left out of the result.

    One pass each settles clear cases (bf16 ten times slower, int8 twice as fast). A
    precision within ``PROBE_CLEAR`` of fp32 after its pass is a near-tie that one pass
    cannot call on a shared CPU, whose speed switches between regimes within a second
    (``python -m benchmarks --only noise``): fp32 and it are then timed alternately
    until it has ``PROBE_ROUNDS`` passes (``probe_passes``), and the medians are
    returned.
    """
    import statistics

    from objectives._trial import _threads, skeleton, task_latency

    models: dict[int, tuple[torch.nn.Module, torch.device]] = {}
    dev = torch.device(device)
    for b in sorted(set(int(x) for x in bits), reverse=True):
        if dev.type != "cpu" and b in CPU_ONLY_BITS:
            continue
        try:
            with _threads(task.threads):
                model = skeleton(task, CompressionConfig(quant_bits=b))
        except TaskError:
            continue
        target = torch.device("cpu") if b in CPU_ONLY_BITS else dev
        models[b] = (model.to(target), target)

    def time_once(b: int) -> float:
        model, target = models[b]
        return task_latency(model, task, device=target)[0].median_ms

    return {b: statistics.median(v) for b, v in probe_passes(time_once, list(models)).items()}


def probe_passes(time_once: Callable[[int], float], bits: Sequence[int]) -> dict[int, list[float]]:
    """The timing passes ``precision_latencies`` takes, in order: one per precision; then,
    for each precision within ``PROBE_CLEAR`` of fp32 (32 must be in ``bits``, else one
    pass each), passes alternating fp32 and it until it has ``PROBE_ROUNDS``.

    Args:
        time_once: Times one precision once (ms).
        bits: The precisions, in the order of their first pass.
    """
    passes = {b: [time_once(b)] for b in bits}
    if 32 not in passes:
        return passes
    low, high = PROBE_CLEAR
    for b in [b for b in passes if b != 32]:
        if not low <= passes[b][0] / passes[32][0] <= high:
            continue
        while len(passes[b]) < PROBE_ROUNDS:
            passes[32].append(time_once(32))
            passes[b].append(time_once(b))
    return passes


RETIME_MIN_SECONDS = 5.0
"""``retime`` goes on with rounds until at least this many seconds have passed."""

RETIME_MAX_ROUNDS = 500


def retime(
    task: Task,
    configs: Sequence[CompressionConfig],
    *,
    rounds: int = 3,
    device: torch.device | str = "cpu",
    min_seconds: float = RETIME_MIN_SECONDS,
) -> tuple[float, list[float]]:
    """Time the teacher and each config's compressed model alone, interleaved.

    Each of ``rounds`` rounds times the teacher, then every config once
    (``task_latency``: warm-up, ≥ 30 samples, median); the result is the median over
    rounds of each — so slow drift of the machine affects teacher and candidates alike.
    On shared CPUs the machine's speed also switches between regimes lasting up to
    seconds (``python -m benchmarks --only noise``): a few rounds of a sub-millisecond
    model fit inside one regime, and two re-timings then differ by tens of per cent. So
    rounds go on until ``min_seconds`` have passed as well (at most
    ``RETIME_MAX_ROUNDS``): the median then reads the machine's usual state, not one
    moment of it (the noise benchmark: the median gap between two re-timings of the
    same models fell from 9-22 % to 3-8 %; a re-timing that lands in a slow stretch is
    still off). Models slow enough to need that long anyway add no rounds.
    A config's model is its ``skeleton`` (pruned and quantized teacher weights): the
    dense kernels a trained artifact runs cost the same whatever the weights' values, so
    nothing is fine-tuned again. Run it when nothing else runs on the machine (a search
    does, after its last trial).

    Returns:
        ``(teacher median ms, [median ms per config])``.
    """
    import copy
    import statistics
    import time

    from objectives._trial import _final_device, _threads, skeleton, task_latency

    models = []
    with _threads(task.threads):
        for config in configs:
            target = _final_device(config, device)
            models.append((skeleton(task, config).to(target), target))
    teacher = copy.deepcopy(task.teacher).to(device).eval()
    teacher_ms: list[float] = []
    config_ms: list[list[float]] = [[] for _ in models]
    start = time.perf_counter()
    done = 0
    while done < max(1, int(rounds)) or (
        time.perf_counter() - start < min_seconds and done < RETIME_MAX_ROUNDS
    ):
        done += 1
        teacher_ms.append(task_latency(teacher, task, device=device)[0].median_ms)
        for samples, (model, target) in zip(config_ms, models, strict=True):
            samples.append(task_latency(model, task, device=target)[0].median_ms)
    return statistics.median(teacher_ms), [statistics.median(s) for s in config_ms]
