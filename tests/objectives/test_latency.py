"""Latency timing: samples of several models taken in turn, and a trial's teacher beside it."""

from __future__ import annotations

import time

import pytest
import torch

from objectives import CompressionConfig, evaluate, measure_latencies, measure_latency


class Sleeper(torch.nn.Module):
    """A model whose forward pass takes ``ms`` milliseconds and logs its name."""

    def __init__(self, name: str, ms: float, log: list[str]) -> None:
        super().__init__()
        self.name, self.ms, self.log = name, ms, log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(self.name)
        time.sleep(self.ms / 1000.0)
        return x


def test_samples_of_several_models_alternate_after_each_warms_up():
    log: list[str] = []
    a, b = Sleeper("a", 3.0, log), Sleeper("b", 3.0, log)
    stats = measure_latencies([(a, "cpu"), (b, "cpu")], torch.zeros(4, 2), warmup=5)
    # Each warms up (5 passes) and calibrates (1 pass) on its own; a 3 ms pass already
    # fills a 2 ms sample, so a sample is one pass: then one of each, in turn.
    assert log[:12] == ["a"] * 6 + ["b"] * 6
    assert log[12:] == ["a", "b"] * 30
    assert [s.repeats for s in stats] == [30, 30] and [s.inner for s in stats] == [1, 1]


def test_interleaved_medians_keep_the_ratio_of_the_models():
    log: list[str] = []
    stats = measure_latencies(
        [(Sleeper("fast", 3.0, log), "cpu"), (Sleeper("slow", 6.0, log), "cpu")],
        torch.zeros(1), warmup=1,
    )
    assert stats[1].median_ms / stats[0].median_ms == pytest.approx(2.0, rel=0.15)
    assert stats[0].batch_size == 1


def test_measure_latency_is_the_one_model_case():
    log: list[str] = []
    stats = measure_latency(Sleeper("a", 3.0, log), torch.zeros(2, 2), warmup=2, repeats=31)
    assert log == ["a"] * (2 + 1 + 31)
    assert stats.repeats == 31 and stats.median_ms >= 3.0


def test_a_trial_times_the_teacher_beside_its_artifact(digits_task):
    # The teacher's own architecture, fp32: the artifact and the teacher beside it run the
    # same kernels, so their interleaved medians agree closely (timed apart on this shared
    # CPU they can differ by 1.4x: docs/benchmarks.md, orchestration).
    same = evaluate(digits_task, CompressionConfig(quant_bits=32))
    assert same.reference_latency_ms is not None
    assert same.latency_ms / same.reference_latency_ms == pytest.approx(1.0, abs=0.25)
    assert "reference_ms" not in same.latencies
    # A model half the width per layer runs faster than the teacher beside it.
    small = evaluate(digits_task, CompressionConfig(prune_ratio=0.75))
    assert small.latency_ms < small.reference_latency_ms
