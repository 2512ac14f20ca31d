"""How well a per-layer timing table predicts the whole model's time.

The allocation (``latency_saving``, ``latency_budget``) adds up per-layer times from a
table; what a trial is judged on is the whole model's latency. This benchmark builds
allocations of the task's teacher — every layer at int8, bf16 or int4, every layer but
the tied head at int8, only the head at int8, and random mixes (seeded) — and compares
each one's change in time against fp32 as

* **measured**: the whole model, its samples interleaved with the fp32 model's (the
  task's latency workload: ``measure_decode_latencies`` or ``measure_latencies``);
* **in-model table**: the sum of the layers' changes in the table the search uses
  (``objectives.operators._layer_timing.measure_layer_latency``: each layer timed inside
  the running model);
* **in-model + switches**: that sum plus the profile's cost of each change of precision
  between neighbouring layers (``measure_switch_costs``), what ``allocate`` charges;
* **alone table**: the same sum from each layer timed alone on the activation it sees,
  called again and again (what the allocation used before version 6; kept here only as
  the comparison: ``_alone_table``).

Beside those fixed allocations, what ``allocate`` itself chooses at three sizes and two
``latency_saving`` values, with the switch costs charged and left out: whether charging
them makes the allocations the search runs faster.

Reported per allocation, then the mean absolute error of each table's prediction (ms,
and as a share of the fp32 model's time) and Spearman's rank correlation with the
measured changes: the allocation chooses by comparing options, so order is what counts.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import statistics
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmarks._report import machine, table, write_section
from objectives import Task, pruned_copy
from objectives._config import CompressionConfig
from objectives.operators._allocation import (
    LAYER_BITS,
    _neighbours,
    allocate,
    allocated,
    quantize_layer,
    tied_layers,
    uniform_budget,
)
from objectives.operators._layer_timing import switches
from objectives.operators._profile import task_profile
from objectives.operators._quantize import quantize

RANDOM_MIXES = 6
ROUNDS = 5
ALLOCATION_SAVINGS = (0.5, 1.0)


@torch.inference_mode()
def _alone_table(task: Task, model: nn.Module, names: list[str]) -> dict[str, dict[int, float]]:
    """Each layer timed alone at each precision on the activation it receives in the
    task's latency workload (for decode, the prompt's last position), as before."""
    from objectives._task import forward
    from objectives.measure._latency import measure_latencies

    decode = task.latency_mode == "decode"
    inputs = task.decode_prompt if decode else task.latency_inputs
    seen: dict[str, torch.Tensor] = {}
    hooks = [model.get_submodule(n).register_forward_pre_hook(
        lambda _m, args, n=n: seen.setdefault(n, args[0].detach())) for n in names]
    try:
        forward(model, inputs)
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for n in names:
        x = seen[n][..., -1:, :].contiguous() if decode and seen[n].dim() >= 3 else seen[n]
        stats = measure_latencies(
            [(quantize_layer(model.get_submodule(n), b), "cpu") for b in LAYER_BITS], x,
            threads=task.threads, repeats=30, warmup=3)
        out[n] = {b: s.median_ms for b, s in zip(LAYER_BITS, stats, strict=True)}
    return out


def _measure(task: Task, models: list[nn.Module]) -> list[float]:
    from objectives.measure._latency import measure_decode_latencies, measure_latencies

    pairs = [(m, "cpu") for m in models]
    if task.latency_mode == "decode":
        stats = measure_decode_latencies(pairs, task.decode_prompt, tokens=task.decode_tokens,
                                         threads=task.threads)
    else:
        stats = measure_latencies(pairs, task.latency_inputs, threads=task.threads)
    return [s.median_ms for s in stats]


def _spearman(a: list[float], b: list[float]) -> float:
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        for i, j in enumerate(order):
            r[j] = float(i)
        return r
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else float("nan")


def run(task_factory: Callable[[], Task], task_name: str) -> dict[str, Any]:
    """Time the allocations side by side, write the ``layer-timing-<task>`` section."""
    task = task_factory()
    torch.set_num_threads(task.threads)
    student = pruned_copy(task, CompressionConfig())
    names = allocated(student)
    tied = tied_layers(student)
    decode = task.latency_mode == "decode"
    # The search's own profile of the teacher (fp32 base): its in-model table and switch
    # costs are what allocations are made by; the unpruned student has its layers.
    profile = task_profile(task)
    inside = profile.latency_ms
    changes = _neighbours(names, {n: n for n in names}, profile)
    alone = _alone_table(task, student, names)
    rng = random.Random(0)
    allocations: dict[str, dict[str, int]] = {
        f"every layer {b}": dict.fromkeys(names, b) for b in (16, 8, 4)}
    for n in tied:
        allocations[f"every layer 8 but {n}"] = {**dict.fromkeys(names, 8), n: 32}
        allocations[f"only {n} at 8"] = {**dict.fromkeys(names, 32), n: 8}
    for i in range(RANDOM_MIXES):
        allocations[f"random mix {i}"] = {n: rng.choice(LAYER_BITS) for n in names}
    # What the search would allocate at a few sizes, charging switches or not.
    b8, b16 = uniform_budget(student, 8), uniform_budget(student, 16)
    blind = dataclasses.replace(profile, switch_ms={})
    for budget in (b8 + 0.5, (b8 + b16) / 2, (b16 + 32) / 2):
        for saving in ALLOCATION_SAVINGS:
            for label, prof in (("switches charged", profile), ("switches not charged", blind)):
                got = allocate(student, prof, budget, latency_saving=saving).layer_bits
                allocations[f"{budget:.2f} bits, saving {saving:g}, {label} "
                            f"({switches(profile.order, got)} switches)"] = got
    models = [copy.deepcopy(student)] + [
        quantize(copy.deepcopy(student), 32, layer_bits=bits) for bits in allocations.values()]
    rounds = [_measure(task, models) for _ in range(ROUNDS)]
    medians = [statistics.median(r[i] for r in rounds) for i in range(len(models))]
    fp32 = medians[0]

    def predicted(t: dict[str, dict[int, float]], bits: dict[str, int]) -> float:
        return sum(t[n][b] - t[n][32] for n, b in bits.items())

    rows, measured, p_in, p_sw, p_alone = [], [], [], [], []
    for (label, bits), ms in zip(allocations.items(), medians[1:], strict=True):
        measured.append(ms - fp32)
        p_in.append(predicted(inside, bits))
        p_sw.append(p_in[-1] + (changes.total(bits) if changes else 0.0))
        p_alone.append(predicted(alone, bits))
        rows.append([label, f"{ms:.3f}", f"{ms - fp32:+.3f} ({(ms - fp32) / fp32:+.0%})",
                     f"{p_sw[-1]:+.3f}", f"{p_in[-1]:+.3f}", f"{p_alone[-1]:+.3f}"])

    def mae(pred: list[float]) -> float:
        return statistics.fmean(abs(p - m) for p, m in zip(pred, measured, strict=True))

    unit = "ms/token" if decode else "ms"
    costs = ", ".join(f"{a}/{b} {1000 * v:.1f} µs" for (a, b), v in
                      sorted(profile.switch_ms.items())) or "none measured"
    body = "\n\n".join([
        f"## Per-layer timing table against the whole model ({task_name})",
        f"Command: `python -m benchmarks --only layer_timing --task {task_name}`. "
        f"{machine()}. The teacher (fp32: **{fp32:.3f} {unit}**) with each allocation "
        f"below, timed whole, interleaved with fp32, {ROUNDS} rounds (medians); beside "
        "it the change each per-layer table predicts (the sum over layers of the chosen "
        "precision's time minus fp32's). *In-model*: the table the search uses "
        "(`task_profile`), each layer timed inside the running model; *+ switches*: that "
        "sum plus the profile's cost of each change of precision between neighbours in "
        "execution order (`measure_switch_costs`: blocks against alternating layers, per "
        f"pair of precisions; here {costs} a change); *alone*: each layer timed alone on "
        "its activation (the table before profile version 6). The last rows are what "
        "`allocate` chooses at three sizes (just above uniform int8's, between int8's "
        "and bf16's, between bf16's and fp32's) and two `latency_saving`s, with the "
        "profile's switch costs charged and with them left out.",
        table(["allocation", unit, "measured change vs fp32", "in-model + switches",
               "in-model table predicts", "alone table predicts"], rows),
        f"Mean absolute error of the predicted change: in-model + switches "
        f"**{mae(p_sw):.3f} {unit}** ({mae(p_sw) / fp32:.0%} of fp32's time), in-model "
        f"**{mae(p_in):.3f}** ({mae(p_in) / fp32:.0%}), alone **{mae(p_alone):.3f}** "
        f"({mae(p_alone) / fp32:.0%}). Spearman rank correlation with the measured "
        f"changes: in-model + switches **{_spearman(p_sw, measured):.2f}**, in-model "
        f"**{_spearman(p_in, measured):.2f}**, alone **{_spearman(p_alone, measured):.2f}**.",
    ])
    write_section(f"layer-timing-{task_name}", body)
    print(body)
    return {"mae_in": mae(p_in), "mae_alone": mae(p_alone), "mae_switches": mae(p_sw)}
