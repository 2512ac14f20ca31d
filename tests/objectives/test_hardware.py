"""The hardware line every latency is stored with."""

from __future__ import annotations

from pathlib import Path

import pytest

from objectives import INFERENCE_FLAGS, cpu_flags, describe_hardware


def test_cpu_flags_are_read_from_cpuinfo():
    try:
        line = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("flags"))
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags on this machine")
    have = set(line.split(":", 1)[1].split())
    assert cpu_flags() == tuple(f for f in INFERENCE_FLAGS if f in have)


def test_describe_hardware_names_flags_cores_and_threads():
    line = describe_hardware("cpu", threads=3)
    assert line.endswith(", 3 threads")
    assert "cores" in line and "[" in line
    for flag in cpu_flags():
        assert flag in line
    assert describe_hardware("cpu", threads=1).endswith(", 1 thread")
    assert describe_hardware("cpu", threads=1) == describe_hardware("cpu", threads=1)
