"""Which hardware a latency was measured on, in one line a person can compare.

Latency is a property of the hardware: the same int8 model is 3x faster than fp32 on one
2-core "AMD EPYC" and barely faster on another with the same name but no AVX-512; bf16
is fast with native bf16 units (AVX-512 BF16, AMX, GPUs) and ~10x slower than fp32
without them. Every latency slimsearch records is therefore stored with
``describe_hardware``: the CPU model, the instruction-set extensions that decide
inference speed, the cores and the threads used, and the GPU (name and compute
capability) when the model ran on one.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import torch

INFERENCE_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
    "amx_tile", "amx_bf16", "amx_int8",
)
"""The ``/proc/cpuinfo`` flags that decide CPU inference speed, in the order shown.

AVX2/FMA: fp32 and int8 (fbgemm) kernels; AVX-512 and VNNI: faster int8; AVX-512 BF16 and
AMX: native bf16 (without them bf16 is emulated and can be ~10x slower than fp32)."""


@functools.cache
def _cpuinfo() -> tuple[str, tuple[str, ...]]:
    model = platform.processor() or platform.machine()
    flags: tuple[str, ...] = ()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return model, flags
    for line in lines:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model in ("", platform.machine(), platform.processor()):
            model = value.strip()
        elif key == "flags" and not flags:
            have = set(value.split())
            flags = tuple(f for f in INFERENCE_FLAGS if f in have)
    return model, flags


def cpu_flags() -> tuple[str, ...]:
    """This CPU's ``INFERENCE_FLAGS`` (empty where ``/proc/cpuinfo`` is not readable)."""
    return _cpuinfo()[1]


def describe_hardware(device: torch.device | str = "cpu", threads: int | None = None) -> str:
    """One line naming the hardware a measurement on ``device`` ran on.

    Example: ``"AMD EPYC 7B13 [avx2 fma], 2 cores, 1 thread"``, or on a GPU
    ``"NVIDIA H100 80GB HBM3 (sm_90); host AMD EPYC 7B13 [avx2 fma], 16 cores"``.
    Two measurements are comparable when their lines are equal.
    """
    model, flags = _cpuinfo()
    host = f"{model} [{' '.join(flags) or 'no avx2'}], {os.cpu_count()} cores"
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return f"{torch.cuda.get_device_name(index)} (sm_{major}{minor}); host {host}"
    if threads is not None:
        host += f", {threads} thread{'s' if threads != 1 else ''}"
    return host
