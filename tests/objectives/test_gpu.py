"""GPU code paths: bf16 autocast fine-tune, CUDA-event latency. Skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

from objectives import CompressionConfig, evaluate, evaluate_teacher, measure_latency

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("bits", [32, 16])
def test_trial_on_gpu(digits_task, bits):
    result = evaluate(digits_task, CompressionConfig(prune_ratio=0.5, quant_bits=bits),
                      device="cuda")
    base = evaluate_teacher(digits_task, device="cuda")
    assert result.latency is not None and result.latency.device.startswith("cuda")
    assert result.accuracy > base.accuracy - 0.1
    assert result.size_bytes < base.size_bytes


def test_cuda_event_latency_is_positive_and_stable(digits_task):
    model = digits_task.teacher.to("cuda")
    stats = measure_latency(model, digits_task.latency_inputs, device="cuda")
    digits_task.teacher.to("cpu")
    assert stats.median_ms > 0 and stats.repeats >= 30


def test_gpu_work_hold_ends_after_its_kernels(tmp_path):
    from objectives import MeasurementLock, device_synchronizer, lock_path

    path = lock_path(tmp_path / "m.lock", "cuda")
    assert path != tmp_path / "m.lock"  # one lock per GPU, not the machine's
    lock = MeasurementLock(path, synchronize=device_synchronizer("cuda"))
    x = torch.randn(4096, 4096, device="cuda")
    with lock.working():
        for _ in range(20):  # queued, not finished, when the block ends
            x = x @ x
            x = x / x.norm()
    assert torch.cuda.current_stream().query(), "the hold released before its kernels ended"


def test_int8_dynamic_returns_a_cpu_copy_and_leaves_the_callers_model_on_the_gpu():
    from torch import nn

    from objectives.operators._linear_quant import int8_dynamic

    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).to("cuda")
    out = int8_dynamic(model, {"0"})
    assert all(p.device.type == "cuda" for p in model.parameters())
    assert type(model[0]) is nn.Linear and type(out[0]) is not nn.Linear
    assert out[2].weight.device.type == "cpu"
