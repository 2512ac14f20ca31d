"""The hardware probe: how fast the teacher runs at each precision on this device.

Whether a precision is faster than fp32 is a property of the hardware (bf16 is ~3x faster
with native bf16 units and ~10x slower without them; int8 kernels vary with AVX-512 and
VNNI). Before a search starts, the teacher itself is timed at each precision the space
holds — same inputs, threads and timing as a trial — so the search can tell which
precisions pay off here, without guessing from the CPU's name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from objectives._config import CompressionConfig
from objectives._errors import TaskError
from objectives._task import Task

CPU_ONLY_BITS = (8, 4)


def precision_latencies(
    task: Task, bits: Iterable[int], *, device: torch.device | str = "cpu"
) -> dict[int, float]:
    """Median latency (ms) of the unpruned teacher at each of ``bits`` on ``device``.

    The model at each precision is built exactly as a trial builds it (``skeleton``:
    the teacher's structure and weights, quantized), and timed like a trial's artifact
    (``task_latency``: the task's latency objective). Precisions that cannot run on
    ``device`` (int8/int4 on a GPU) or that the model refuses are left out of the result.
    """
    from objectives._trial import _threads, skeleton, task_latency

    out: dict[int, float] = {}
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
        model = model.to(target)
        out[b] = task_latency(model, task, device=target)[0].median_ms
    return out


def retime(
    task: Task,
    configs: Sequence[CompressionConfig],
    *,
    rounds: int = 5,
    device: torch.device | str = "cpu",
) -> tuple[float, list[float]]:
    """Time the teacher and each config's compressed model alone, interleaved.

    Each of ``rounds`` rounds times the teacher, then every config once
    (``task_latency``: warm-up, ≥ 30 samples, median); the result is the median over
    rounds of each — so slow drift of the machine affects teacher and candidates alike.
    On shared CPUs the machine's speed also switches between regimes within a second
    (``python -m benchmarks --only noise``): one round of a sub-millisecond model falls
    inside one regime, so more rounds spread over more time give a steadier median.
    A config's model is its ``skeleton`` (pruned and quantized teacher weights): the
    dense kernels a trained artifact runs cost the same whatever the weights' values, so
    nothing is fine-tuned again. Run it when nothing else runs on the machine (a search
    does, after its last trial).

    Returns:
        ``(teacher median ms, [median ms per config])``.
    """
    import copy
    import statistics

    from objectives._trial import _final_device, _threads, skeleton, task_latency

    models = []
    with _threads(task.threads):
        for config in configs:
            target = _final_device(config, device)
            models.append((skeleton(task, config).to(target), target))
    teacher = copy.deepcopy(task.teacher).to(device).eval()
    teacher_ms: list[float] = []
    config_ms: list[list[float]] = [[] for _ in models]
    for _ in range(max(1, int(rounds))):
        teacher_ms.append(task_latency(teacher, task, device=device)[0].median_ms)
        for samples, (model, target) in zip(config_ms, models, strict=True):
            samples.append(task_latency(model, task, device=target)[0].median_ms)
    return statistics.median(teacher_ms), [statistics.median(s) for s in config_ms]
