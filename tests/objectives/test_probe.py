"""The hardware probe: one pass settles clear cases, near-ties get interleaved rounds."""

from __future__ import annotations

from objectives._probe import PROBE_ROUNDS, precision_latencies, probe_passes


def _scripted(times: dict[int, list[float]]):
    calls: list[int] = []

    def time_once(bits: int) -> float:
        calls.append(bits)
        return times[bits][sum(1 for c in calls if c == bits) - 1]

    return time_once, calls


def test_clear_cases_take_one_pass_and_near_ties_alternate_with_fp32():
    time_once, calls = _scripted({
        32: [2.0, 1.6, 1.7, 9.9], 16: [20.0], 8: [2.1, 1.5, 1.4], 4: [1.0],
    })
    passes = probe_passes(time_once, [32, 16, 8, 4])
    # bf16 at 10x and int4 at 0.5x are clear on one pass; int8 at 1.05x is a near-tie:
    # fp32 and int8 alternate until int8 has PROBE_ROUNDS passes.
    assert calls == [32, 16, 8, 4, 32, 8, 32, 8]
    assert passes == {32: [2.0, 1.6, 1.7], 16: [20.0], 8: [2.1, 1.5, 1.4], 4: [1.0]}
    assert len(passes[8]) == PROBE_ROUNDS


def test_without_fp32_each_precision_is_timed_once():
    time_once, calls = _scripted({16: [3.0], 8: [2.0]})
    assert probe_passes(time_once, [16, 8]) == {16: [3.0], 8: [2.0]}
    assert calls == [16, 8]


def test_precision_latencies_times_the_teacher_at_each_precision(digits_task):
    probe = precision_latencies(digits_task, [32, 8])
    assert set(probe) == {32, 8} and all(ms > 0 for ms in probe.values())
