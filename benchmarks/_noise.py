"""Timing noise on this machine, and which reading of interleaved rounds reproduces.

Two measurements, nothing else running (no Ray trials):

* **regimes**: three fixed workloads — a pure-Python loop, a small fp32 matmul, a memory
  sweep — each timed in short windows (``WINDOWS`` of them, ``GAP_S`` apart). If the
  machine's speed were steady, each workload's windows would agree within a few per
  cent; the table gives the slowest window over the fastest, and the share of windows
  more than 25 % slower than the fastest.
* **estimators**: the re-timing procedure (``objectives.retime``'s rounds: the teacher,
  then each model, ``task_latency`` each, ``ROUNDS`` rounds) repeated ``REPEATS``
  times on the digits teacher and two compressed students. Each repetition is read
  two ways — median of the round medians (what ``retime`` reports), and the fastest
  round (``timeit``'s advice: slower rounds are other load) — and the table gives, for
  each reading, the spread over repetitions (slowest / fastest repetition, and the
  median absolute deviation from the median repetition): the smaller, the better a
  second re-timing agrees with the first. A third reading repeats ``SPAN_REPEATS``
  times the procedure ``retime`` now follows: rounds go on until ``RETIME_MIN_SECONDS``
  have passed, then the median.
"""

from __future__ import annotations

import copy
import statistics
import time

import torch

from benchmarks._report import machine, table, write_section
from objectives import RETIME_MIN_SECONDS

WINDOWS = 120
GAP_S = 0.05
ROUNDS = 5
REPEATS = 30
SPAN_REPEATS = 10


def _python_loop() -> float:
    t0 = time.perf_counter()
    s = 0
    for i in range(20_000):
        s += i * i
    return (time.perf_counter() - t0) * 1e3


def _matmul(a: torch.Tensor, w: torch.Tensor) -> float:
    t0 = time.perf_counter()
    for _ in range(50):
        a @ w
    return (time.perf_counter() - t0) * 1e3


def _memory(x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    x.fill_(1.0)
    x.sum()
    return (time.perf_counter() - t0) * 1e3


def regimes() -> list[list[object]]:
    torch.set_num_threads(1)
    a, w = torch.randn(64, 256), torch.randn(256, 256)
    x = torch.empty(8_000_000)
    work = {"pure-Python loop (20k iterations)": _python_loop,
            "fp32 matmul 64×256 · 256×256 (×50)": lambda: _matmul(a, w),
            "memory sweep (32 MB fill + sum)": lambda: _memory(x)}
    times: dict[str, list[float]] = {k: [] for k in work}
    for _ in range(WINDOWS):
        for name, f in work.items():
            times[name].append(f())
        time.sleep(GAP_S)
    rows = []
    for name, v in times.items():
        fast = min(v)
        rows.append([name, f"{fast:.3f}", f"{statistics.median(v):.3f}",
                     f"{max(v) / fast:.2f}x",
                     f"{100 * sum(t > 1.25 * fast for t in v) / len(v):.0f} %"])
    return rows


def _spread(values: list[float]) -> str:
    mid = statistics.median(values)
    mad = statistics.median(abs(v / mid - 1) for v in values)
    return f"{max(values) / min(values):.2f}x / {100 * mad:.1f} %"


def estimators() -> tuple[list[list[object]], str]:
    from objectives import CompressionConfig, retime
    from objectives._trial import skeleton, task_latency
    from objectives.tasks import digits

    task = digits(finetune_epochs=1, latency_batch_size=64)
    configs = {"prune 0.6 + int8": CompressionConfig(prune_ratio=0.6, quant_bits=8),
               "prune 0.3, fp32": CompressionConfig(prune_ratio=0.3)}
    models = {"teacher (fp32)": copy.deepcopy(task.teacher).eval(),
              **{name: skeleton(task, c) for name, c in configs.items()}}
    readings: dict[str, dict[str, list[float]]] = {
        "median of rounds": {k: [] for k in models},
        "fastest round": {k: [] for k in models},
        f"median of rounds over ≥ {RETIME_MIN_SECONDS:g} s": {k: [] for k in models},
    }
    t0 = time.perf_counter()
    for _ in range(REPEATS):
        per_round: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(ROUNDS):
            for name, model in models.items():
                per_round[name].append(task_latency(model, task)[0].median_ms)
        for name, r in per_round.items():
            readings["median of rounds"][name].append(statistics.median(r))
            readings["fastest round"][name].append(min(r))
        time.sleep(0.3)
    span = f"median of rounds over ≥ {RETIME_MIN_SECONDS:g} s"
    for _ in range(SPAN_REPEATS):  # retime itself: rounds until RETIME_MIN_SECONDS passed
        teacher_ms, config_ms = retime(task, list(configs.values()), rounds=ROUNDS)
        readings[span]["teacher (fp32)"].append(teacher_ms)
        for name, ms in zip(configs, config_ms, strict=True):
            readings[span][name].append(ms)
        time.sleep(0.3)
    wall = time.perf_counter() - t0
    rows = []
    teacher = "teacher (fp32)"
    for reading, by_model in readings.items():
        for name, values in by_model.items():
            ratio = ([v / t for v, t in zip(values, by_model[teacher], strict=True)]
                     if name != teacher else None)
            rows.append([reading, name, f"{statistics.median(values):.4f}", _spread(values),
                         _spread(ratio) if ratio else ""])
    return rows, f"{wall:.0f} s"


def run() -> None:
    reg = regimes()
    print("regimes", reg, flush=True)
    est, wall = estimators()
    print("estimators", est, flush=True)
    body = "\n".join([
        "## Timing noise on this machine",
        "",
        f"`python -m benchmarks --only noise`. Machine: {machine()}. One thread, nothing "
        "else running (module docstring of `benchmarks/_noise.py`).",
        "",
        f"Regimes: each workload timed in {WINDOWS} short windows, {GAP_S * 1000:.0f} ms "
        "apart, interleaved. On a steady machine the slowest window would be within a few "
        "per cent of the fastest.",
        "",
        table(["workload", "fastest ms", "median ms", "slowest / fastest",
               "windows > 25 % slower than the fastest"], reg),
        "",
        f"Re-timing readings: the re-timing procedure ({ROUNDS} interleaved rounds of "
        f"`task_latency`, digits, batch 64) repeated {REPEATS} times, read two ways, and "
        f"rounds going on for at least {RETIME_MIN_SECONDS:g} s (what `retime` does now) "
        f"repeated {SPAN_REPEATS} times ({wall} in all); spread "
        "over the repetitions as slowest / fastest and the median absolute deviation from "
        "the median repetition, for the absolute figure and for the ratio to the teacher "
        "of the same repetition. The smaller the spread, the closer a second re-timing "
        "agrees with the first.",
        "",
        table(["reading", "model", "median ms", "spread of ms", "spread of ratio to teacher"],
              est),
    ])
    write_section("noise", body)
