"""The hardware probe: how fast the teacher runs at each precision on this device.

Whether a precision is faster than fp32 is a property of the hardware (bf16 is ~3x faster
with native bf16 units and ~10x slower without them; int8 kernels vary with AVX-512 and
VNNI). Before a search starts, the teacher itself is timed at each precision the space
holds — same inputs, threads and timing as a trial — so the search can tell which
precisions pay off here, without guessing from the CPU's name.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from objectives._config import CompressionConfig
from objectives._errors import TaskError
from objectives._task import Task
from objectives.measure._latency import measure_latency

CPU_ONLY_BITS = (8, 4)


def precision_latencies(
    task: Task, bits: Iterable[int], *, device: torch.device | str = "cpu"
) -> dict[int, float]:
    """Median latency (ms) of the unpruned teacher at each of ``bits`` on ``device``.

    The model at each precision is built exactly as a trial builds it (``skeleton``:
    the teacher's structure and weights, quantized), and timed like a trial's artifact
    (``measure_latency``). Precisions that cannot run on ``device`` (int8/int4 on a GPU)
    or that the model refuses are left out of the result.
    """
    from objectives._trial import _threads, skeleton

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
        out[b] = measure_latency(
            model, task.latency_inputs, threads=task.threads, device=target
        ).median_ms
    return out
