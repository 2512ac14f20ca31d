"""Per-layer timing tables, measured inside the running model.

The allocation's hardware feedback (``objectives.operators._allocation``) needs each
allocated layer's time at each precision. An earlier version timed each layer *alone*,
called again and again on its captured activation; inside a model it runs between the
other layers, whose weights evict its own from the core's caches, and a table of layers
alone misread both ways (measured, ``tiny_lm`` decode, one thread):

* AMD EPYC (AVX-512 BF16, no AMX): alone, int8 took 1.6–2.9x a layer's fp32 time and the
  table predicted every layer but the head at int8 would add 0.46 ms a token; in the
  model they made it 0–3 % *faster*;
* Intel Xeon (AMX): alone, bf16 layers summed to 4.46 ms against fp32's 0.52 (+3.94 ms);
  the model with every layer bf16 ran +1.46 ms. Timed in the model (below), the layers'
  bf16 time was +1.31 ms, int8 +0.66 (model: +0.61) and int4 +3.45 (model: +3.93;
  alone: +2.80).

So each layer is timed where it runs: the model is built once per precision with *every*
allocated layer at it, exactly as ``quantize`` builds a trial's model (on the base the
trial runs on), and the task's own latency workload runs it — one forward pass over the
latency inputs, or a greedy decode from the decode prompt, where only the one-token
steps are recorded — while a forward pre-hook and hook on each layer read the clock.
The four models' runs are interleaved (one of each in turn, ``rounds`` times, as
``measure_latencies`` interleaves whole models) under the measurement lock, and each
layer's figure is the median over all its calls. The hooks cost the same at every
precision (a few microseconds a call), so the differences between a layer's options,
which are all the allocation weighs, are unaffected; the time shares it records carry
that constant in their denominator.

A layer's time with its neighbours at the same precision holds beside neighbours at
others only to first order: each *change* of precision from one layer to the next in
execution order costs time of its own, which no layer's figure holds. Measured on
``tiny_lm`` decode, the same two precisions in two blocks of layers (one change) against
alternating layer by layer (one at every layer): 3.5–10 µs a change on a Xeon with AMX,
9–13 µs among fp32, int8 and bf16 on an AMD EPYC (AVX-512 BF16) — 0.4 ms a token over
42 changes, a tenth of the model's time — where the table added up within 0.06 ms for
the blocks. ``measure_switch_costs`` measures that cost per pair of precisions, the same
way, for the allocation to charge each change (``_allocation.allocate``).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from objectives._task import Inputs, forward
from objectives.operators._conv1d import linearize_conv1d

IN_MODEL_ROUNDS = 10
"""Runs of the workload per precision (interleaved); decode records ``tokens`` calls of
each layer per run, a forward pass one (or as many as the model calls it)."""

TIMING_VERSION = 2
"""Bumped when what a table means changes (2: timed in the model, not alone)."""

SWITCH_REPEATS = 30
"""Interleaved samples of each blocks/alternating model ``measure_switch_costs`` times."""

MIN_SWITCH_LAYERS = 8
"""Fewer allocated layers than this and no switch cost is measured: blocks and
alternating then differ by a handful of changes, whose cost (microseconds) is inside the
timing noise of a whole model; the allocation charges none (``switch_ms`` empty)."""

_TABLES: dict[str, dict[str, dict[int, float]]] = {}


def _digest(work: nn.Module, inputs: Inputs, tokens: int, base: int, threads: int,
            rounds: int) -> str:
    """The table's identity: the model's structure (modules and parameter shapes), the
    workload's shapes, base, threads, machine, torch and the timing settings."""
    from objectives.measure._hardware import describe_hardware
    from objectives.operators._allocation import LAYER_BITS

    shapes = [(n, tuple(p.shape), str(p.dtype)) for n, p in work.named_parameters()]
    if isinstance(inputs, torch.Tensor):
        workload: Any = (tuple(inputs.shape), str(inputs.dtype))
    else:
        workload = sorted((k, tuple(v.shape), str(v.dtype)) for k, v in inputs.items())
    text = (f"{work!r}|{shapes}|{workload}|{tokens}|{base}|{LAYER_BITS}|{rounds}|"
            f"{TIMING_VERSION}|{torch.__version__}|{describe_hardware('cpu', threads)}")
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _read(file: Path, names: list[str]) -> dict[str, dict[int, float]] | None:
    from objectives.operators._allocation import LAYER_BITS

    try:
        raw = json.loads(file.read_text("utf-8"))
        table = {str(n): {int(b): float(t) for b, t in v.items()} for n, v in raw.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return None  # a damaged entry is timed again
    if sorted(table) != sorted(names) or not all(
            set(t) == set(LAYER_BITS) and all(math.isfinite(x) and x >= 0 for x in t.values())
            for t in table.values()):
        return None
    return table


def _recorder(
    tree: nn.Module, names: list[str], decode: bool
) -> tuple[dict[str, list[float]], list[Any]]:
    """Forward hooks on ``names`` of ``tree`` that append each call's seconds to
    ``times[name]`` — in decode, only calls on one position (the generated token)."""
    times: dict[str, list[float]] = {n: [] for n in names}
    started: dict[str, float] = {}
    handles = []
    for name in names:
        def pre(_m: nn.Module, args: tuple[Any, ...], name: str = name) -> None:
            x = args[0] if args and isinstance(args[0], torch.Tensor) else None
            if decode and x is not None and x.dim() >= 3 and x.shape[-2] != 1:
                started.pop(name, None)  # the prompt's prefill: not a decode step
                return
            started[name] = time.perf_counter()

        def post(_m: nn.Module, _args: tuple[Any, ...], _out: Any, name: str = name) -> None:
            t0 = started.pop(name, None)
            if t0 is not None:
                times[name].append(time.perf_counter() - t0)

        layer = tree.get_submodule(name)
        handles += [layer.register_forward_pre_hook(pre), layer.register_forward_hook(post)]
    return times, handles


@torch.inference_mode()
def measure_layer_latency(
    model: nn.Module,
    inputs: Inputs,
    *,
    threads: int = 1,
    decode_tokens: int = 0,
    base: int = 32,
    cache: str | Path | None = None,
    rounds: int = IN_MODEL_ROUNDS,
) -> dict[str, dict[int, float]]:
    """Median ms of each allocated layer of ``model`` (``allocated``) at each of
    ``LAYER_BITS``, timed inside ``model`` on CPU (see the module docstring): one forward
    pass over ``inputs``, or with ``decode_tokens`` > 0 a greedy decode of that many
    tokens from the prompt ``inputs`` (a causal LM with a KV cache), recording the
    one-token steps. Each precision's model is ``model`` (fp32, not modified) with every
    allocated layer at it on ``base``, as ``quantize(..., layer_bits=...)`` builds it.
    A layer the workload never calls gets 0.

    With ``cache`` (a directory), the table is kept under ``cache/layer_times`` (and in
    this process) by the model's structure, the workload's shapes, base, threads, machine
    and torch version, and read back instead of timed again.

    Raises:
        TaskError: ``model`` has layers allocation cannot cover, or (decode) returns no
            KV cache.
    """
    from objectives.measure._latency import _decode_sampler
    from objectives.measure._lock import measuring
    from objectives.operators._allocation import LAYER_BITS, allocated, check_base
    from objectives.operators._linear_quant import BFloat16Module
    from objectives.operators._quantize import quantize

    check_base(base)
    work = linearize_conv1d(copy.deepcopy(model)).float().cpu().eval()
    names = allocated(work)
    digest, file = "", None
    if cache is not None:
        digest = _digest(work, inputs, decode_tokens, base, threads, rounds)
        if digest in _TABLES:
            return copy.deepcopy(_TABLES[digest])
        file = Path(cache) / "layer_times" / f"{digest}.json"
        got = _read(file, names) if file.is_file() else None
        if got is not None:
            _TABLES[digest] = got
            return copy.deepcopy(got)
    decode = decode_tokens > 0
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    records: list[dict[str, list[float]]] = []
    handles: list[Any] = []
    try:
        with measuring():
            samplers: list[Callable[[], Any]] = []
            for bits in LAYER_BITS:
                built = quantize(copy.deepcopy(work), base, layer_bits=dict.fromkeys(names, bits))
                tree = built.module if isinstance(built, BFloat16Module) else built
                times, hooks = _recorder(tree, names, decode)
                records.append(times)
                handles += hooks
                if decode:
                    samplers.append(_decode_sampler(built, inputs, torch.device("cpu"),
                                                    decode_tokens, 2))
                else:
                    for _ in range(2):  # warm-up
                        forward(built, inputs)
                    samplers.append(lambda built=built: forward(built, inputs))
            for times in records:
                for calls in times.values():
                    calls.clear()
            for _ in range(max(1, rounds)):
                for sample in samplers:
                    sample()
    finally:
        for h in handles:
            h.remove()
        torch.set_num_threads(previous)
    table = {n: {b: 1000.0 * statistics.median(t[n]) if t[n] else 0.0
                 for b, t in zip(LAYER_BITS, records, strict=True)} for n in names}
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table), encoding="utf-8")
        tmp.replace(file)
        _TABLES[digest] = table
    return copy.deepcopy(table)


def call_order(model: nn.Module, names: list[str], inputs: Inputs) -> list[str]:
    """``names`` (layers of ``model``) in the order one forward pass over ``inputs``
    first calls them; layers it never calls follow, in the order given."""
    seen: list[str] = []
    handles = [model.get_submodule(n).register_forward_pre_hook(
        lambda _m, _a, n=n: None if n in seen else seen.append(n)) for n in names]
    try:
        with torch.inference_mode():
            forward(model, inputs)
    finally:
        for h in handles:
            h.remove()
    return seen + [n for n in names if n not in seen]


def switches(order: list[str], bits: dict[str, int]) -> int:
    """How many neighbours in ``order`` have different precisions in ``bits``."""
    return sum(bits[a] != bits[b] for a, b in itertools.pairwise(order))


@torch.inference_mode()
def measure_switch_costs(
    model: nn.Module,
    inputs: Inputs,
    table: dict[str, dict[int, float]],
    *,
    threads: int = 1,
    decode_tokens: int = 0,
    base: int = 32,
    repeats: int = SWITCH_REPEATS,
) -> tuple[list[str], dict[tuple[int, int], float]]:
    """``(order, switch_ms)``: the allocated layers of ``model`` in execution order
    (``call_order``), and the ms each change of precision between neighbours in that order
    costs beyond what ``table`` (``model``'s ``measure_layer_latency``) sums to, per pair
    of the precisions ``base`` offers (``BASE_BITS``; keyed by ``switch_key``).

    For each pair (p, q): the model with the first half of the layers at p and the rest
    at q (one change), and with the layers alternating p, q, p, … (a change at every
    neighbour), both built as ``quantize`` builds a trial's model and timed whole on the
    task's workload (a decode's one-token steps, or a forward pass), all pairs' models
    interleaved. The cost is the alternating model's extra time over the blocks', less
    what ``table`` predicts between them, per extra change; below 0 (noise) it is 0.
    A model with fewer than ``MIN_SWITCH_LAYERS`` allocated layers gets ``{}``.
    """
    from objectives.measure._latency import measure_decode_latencies, measure_latencies
    from objectives.operators._allocation import BASE_BITS, allocated, check_base, switch_key
    from objectives.operators._quantize import quantize

    check_base(base)
    work = linearize_conv1d(copy.deepcopy(model)).float().cpu().eval()
    order = call_order(work, allocated(work), inputs)
    if len(order) < MIN_SWITCH_LAYERS:
        return order, {}
    half = len(order) // 2
    layouts: list[dict[str, int]] = []
    pairs = list(itertools.combinations(BASE_BITS[base], 2))
    for p, q in pairs:
        layouts.append({n: p if i < half else q for i, n in enumerate(order)})
        layouts.append({n: (p, q)[i % 2] for i, n in enumerate(order)})
    built = [(quantize(copy.deepcopy(work), base, layer_bits=bits), "cpu") for bits in layouts]
    if decode_tokens > 0:  # both set (and restore) the threads, under the lock
        stats = measure_decode_latencies(built, inputs, tokens=decode_tokens,
                                         threads=threads, repeats=repeats)
    else:
        stats = measure_latencies(built, inputs, threads=threads, repeats=repeats)

    def predicted(bits: dict[str, int]) -> float:
        return sum(table[n][b] for n, b in bits.items())

    costs: dict[tuple[int, int], float] = {}
    for k, (p, q) in enumerate(pairs):
        blocks, alternating = layouts[2 * k], layouts[2 * k + 1]
        extra = (stats[2 * k + 1].median_ms - stats[2 * k].median_ms
                 - (predicted(alternating) - predicted(blocks)))
        changes = switches(order, alternating) - switches(order, blocks)
        costs[switch_key(p, q)] = max(0.0, extra / changes)
    return order, costs
