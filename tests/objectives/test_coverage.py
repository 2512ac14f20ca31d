"""Coverage of a compressed model and the pre-flight check of operator settings."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from objectives import (
    CompressionConfig,
    check_setting,
    compress,
    quantization_coverage,
)
from tests.objectives.models import FunctionalOnly, image_task


class MostlyFunctional(nn.Module):
    """A small Linear plus a large matrix used functionally (no layer owns it)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Parameter(torch.randn(64, 256) * 0.05)  # 16384 elements
        self.head = nn.Linear(256, 4)  # 1024 elements

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(x.flatten(1) @ self.proj))


@pytest.fixture(scope="module")
def digits_task():
    from objectives.tasks import digits

    return digits(finetune_epochs=1)


@pytest.mark.parametrize("bits", [32, 16, 8, 4])
def test_digits_mlp_is_fully_covered_at_every_precision(digits_task, bits):
    model, _ = compress(digits_task, CompressionConfig(quant_bits=bits, learning_rate=1e-4))
    cov = quantization_coverage(model, bits)
    assert cov.fraction == 1.0 and cov.uncovered == ()
    assert cov.weight_elements > 10_000


def test_coverage_counts_weights_left_above_the_precision():
    task = image_task(MostlyFunctional(), name="mostly-functional", epochs=1)
    model, _ = compress(task, CompressionConfig(quant_bits=8))
    cov = quantization_coverage(model, 8)
    assert cov.weight_elements == 64 * 256 + 256 * 4
    assert cov.fraction == pytest.approx(1024 / (16384 + 1024))
    assert cov.uncovered == ("MostlyFunctional",)
    assert "MostlyFunctional" in cov.describe()

    reason = check_setting(task, "quant_bits", 8)
    assert reason is not None and "\n" not in reason
    assert reason.startswith("quant_bits=8 would store only 6% of MostlyFunctional's weights")
    assert reason.endswith("remove 8 from quant_bits")
    assert check_setting(task, "quant_bits", 32) is None  # a no-op is never refused
    assert check_setting(task, "quant_bits", 16) is None  # bf16 casts every weight


def test_pruning_that_removes_nothing_is_refused_naming_what_it_left_whole():
    task = image_task(FunctionalOnly(), name="functional", epochs=1)
    reason = check_setting(task, "prune_ratio", 0.5)
    assert reason is not None
    assert reason.startswith("prune_ratio=0.5 removes only 0.0% of FunctionalOnly's weights")
    assert reason.endswith("fix prune_ratio at 0 for this model")
    assert check_setting(task, "prune_ratio", 0.0) is None


def test_settings_that_apply_are_accepted(digits_task):
    for name, value in [("quant_bits", 8), ("quant_bits", 4), ("prune_ratio", 0.5),
                        ("distill_temperature", 3.0), ("batch_size", 32)]:
        assert check_setting(digits_task, name, value) is None, name
    assert "embed_bits=8" in check_setting(digits_task, "embed_bits", 8)
    assert "prune_vocab" in check_setting(digits_task, "prune_vocab", True)
