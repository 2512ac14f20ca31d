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


class MatmulChain(torch.nn.Module):
    """``n`` chained 2048 x 2048 matmuls: GPU work proportional to ``n``."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(torch.randn(2048, 2048) / 45.0) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for w in self.weights:
            x = x @ w
        return x


def test_cuda_event_latency_times_the_kernels_not_their_launch(digits_task):
    model = digits_task.teacher.to("cuda")
    stats = measure_latency(model, digits_task.latency_inputs, device="cuda")
    digits_task.teacher.to("cpu")
    assert stats.median_ms > 0 and stats.repeats >= 30
    # Launches return at once; a timing that did not wait for the kernels would read the
    # 16-matmul chain about as fast as the 2-matmul one.
    x = torch.randn(2048, 2048)
    short = measure_latency(MatmulChain(2).cuda(), x, device="cuda")
    long = measure_latency(MatmulChain(16).cuda(), x, device="cuda")
    assert 5.0 < long.median_ms / short.median_ms < 12.0, (short, long)
    # And it agrees with wall-clock time of synchronised passes.
    import time

    chain, xc = MatmulChain(16).cuda(), x.cuda()
    with torch.inference_mode():
        for _ in range(3):
            chain(xc)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(20):
            chain(xc)
        torch.cuda.synchronize()
    wall_ms = (time.perf_counter() - t0) * 1000.0 / 20
    assert long.median_ms == pytest.approx(wall_ms, rel=0.3)


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
