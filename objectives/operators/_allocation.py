"""Per-layer precision chosen by measured sensitivity under a size budget.

Four steps, each measured rather than assumed:

1. **Sensitivity** (``measure_sensitivity``, once per task): each allocatable layer of the
   teacher is quantized *alone* to each lower precision (int8 dynamic, int4 weight-only,
   exactly as a trial quantizes it) and the KL divergence of the teacher's output
   distribution from the perturbed one is averaged over calibration rows (training data).
   KL of the outputs needs only forward passes, works for classifiers and language
   models alike, and measures what distillation then tries to recover; a Fisher-weighted
   weight error would need gradients of a loss on labelled data and assumes the error is
   small enough for a second-order expansion, which int4 on a fragile layer is not.
2. **Cost** (``layer_costs``, per trial, on the pruned student): the exact bytes the model
   file stores for each layer's weight at each precision (values, scales, zero points —
   ``plain_tensors``, the file's own layout). The bias is the same at every precision and
   is not part of the allocation.
3. **Time** (``measure_layer_latency``, once per task with the sensitivity, and again
   on each pruned student: ``student_layer_latency``): the hardware feedback. Each
   layer is timed *inside the model* at each precision — the model built with every
   layer at that precision, running the task's latency workload (a decode's one-token
   steps for decode latency), hooks on each layer reading the clock, the four
   precisions' runs interleaved (``objectives.operators._layer_timing``) — on the CPU
   and threads the search times on. Whether int8 or int4 is faster than fp32 depends on
   the layer's shape, the hardware (int4 weight-only is slower than fp32 on CPUs without
   its kernels) and the rest of the model (whose weights evict the layer's from the
   caches): a layer timed alone misread that on both CPUs measured (``_layer_timing``).
   With the table, what each *change* of precision between neighbouring layers (in
   execution order) costs, per pair of precisions (``measure_switch_costs``): a few to
   17 µs a change on ``tiny_lm``'s decode, which no layer's figure holds.
4. **Allocation** (``allocate``): the precisions that minimise the summed sensitivity
   with total weight bytes ≤ ``bit_budget / 8`` bytes per weight element — and, with a
   ``latency_budget``, with the layers' summed time ≤ that fraction of their time at
   fp32 (where the size budget allows it: otherwise the fastest allocation of that
   size, whose share is recorded); with a ``latency_saving`` s, with the time at most
   ``T_least − s · (T_least − T_fastest)`` between the least sensitive and the fastest
   allocation of that size. Every such time includes the changes of precision the
   allocation makes between neighbours (``_solve``). A
   multiple-choice knapsack, solved as a 0/1 integer program with SciPy's HiGHS
   (``scipy.optimize.milp``) to proven optimality (``mip_rel_gap=0``) within
   ``MILP_TIME_LIMIT_S``; the result is checked against the budget in exact integer
   bytes. If HiGHS stops at the time limit with a feasible allocation it is used and a
   warning says it may not be the optimum; without one the trial fails (``TaskError``).

**Base precision** (``quant_bits`` with a budget, one of ``BASES``): 32 — the model is
fp32 and a bf16 layer is a ``BFloat16Linear`` (cast in, cast out); 16 — the whole model
runs in bf16 (embeddings, norms, attention arithmetic: ``BFloat16Module``), a bf16 layer
is the base's own, and an fp32, int8 or int4 layer is a ``Float32Island`` (its input cast
to fp32 and its output back, since those kernels take no bf16 activations). On hardware
with native bf16 the bf16 base is what reaches uniform bf16's speed: a per-layer bf16
layer in an fp32 model leaves everything between the layers in fp32 (on MiniLM with
AMX, 36 of 38 layers bf16 on an fp32 base took 62 ms against uniform bf16's 39 ms).
Sensitivity and time are measured on the base the trial runs on (one profile per base):
on a bf16 base, sensitivity is the KL divergence from the all-bf16 model when one layer
leaves it, and time is each layer's on the bf16 activation it sees, casts included; a
bf16 base offers 16, 8 and 4 (``BASE_BITS``: fp32 islands were measured slow for
noise-level changes). Byte costs do not depend on the base.

After pruning, a layer keeps its teacher sensitivity scaled by the share of its weight
elements that remain (quantization noise adds up over the weights a layer keeps), its
byte costs are those of its pruned shape, and its time is **measured again in the pruned
model** (``student_layer_latency``: the trial's own timing table, each student structure
timed once per machine and cached on disk). Scaling the teacher's times by the share of
weights kept — what this did first — ignores per-call overhead (int8's activation
quantization, bf16's casts), which dominates small layers: on digits (AMX) a 79 %-pruned
MLP allocated int8/bf16/fp32 by the scaled table was predicted at 0.71 of its fp32 time
and measured at about twice it (0.157 ms against 0.075 for the same pruning all fp32).
Layers are matched to the teacher's by the name they had before pruning
(``ORIGIN_ATTR``), so depth pruning's renumbering is followed.

Allocatable layers are the model's ``nn.Linear`` layers (Hugging Face ``Conv1D`` after
``linearize_conv1d``) whose weight is not tied to another parameter; the budget is bits
per weight element of those. A tied output projection (``tied_layers``: its weight is an
``nn.Embedding``'s table) is allocated too, on different terms: at the base precision it
stays tied and adds no bytes; at another it is stored apart and adds its own bytes (the
embedding keeps the table), with no elements added to the budget's count — the file's
bytes exactly. Uniform int8 stores it apart, and on ``tiny_lm`` (AMD EPYC) that int8
copy was worth 4–6 % of decode time; an allocation that could not choose it could not
reach uniform int8's speed. Recipes whose ``layer_bits`` lack a tied layer (written
before) leave it tied. Linear layers sharing a weight with another Linear only are
neither: they stay at the base precision, outside the budget.
Models with convolutions or LSTM/GRU layers are refused: their weights would stay fp32
outside the budget.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from objectives._errors import TaskError
from objectives.operators._conv1d import ORIGIN_ATTR, linearize_conv1d
from objectives.operators._linear_quant import (
    BFloat16Module,
    Float32Island,
    bf16_linear,
    int4_weight_only,
    int8_dynamic,
    set_layer,
)
from objectives.operators._quantized_state import canonicalize, plain_tensors
from objectives.operators._static_int8 import conv_names
from spaces import ALLOCATION_BASES

if TYPE_CHECKING:
    from objectives._task import Inputs

LAYER_BITS: tuple[int, ...] = (32, 16, 8, 4)
"""The precisions one layer may get: fp32, bf16 (``BFloat16Linear``), int8 dynamic, int4
weight-only."""

ALLOWED = ", ".join(map(str, LAYER_BITS))
"""``LAYER_BITS`` as error messages name them."""

BASES: tuple[int, ...] = ALLOCATION_BASES
"""The precisions an allocation may start from (``quant_bits`` with a ``bit_budget``): the
model's own dtype, which everything outside the allocated layers runs in (the search
space's ``ALLOCATION_BASES``: one list for both sides)."""

BASE_BITS: dict[int, tuple[int, ...]] = {32: LAYER_BITS, 16: (16, 8, 4)}
"""The precisions an allocation offers a layer on each base. A bf16 base offers no fp32
layer: on ``minilm_text`` (AMX) an fp32 island took 5–7x a bf16 layer's time, and the
change it made to the KL divergence from the fp32 teacher ranged from −6e-6 to +1.3e-5
across layers — as often worse as better, so an allocation that offered it spent bits
and time on noise (at bf16's size it put 6 layers in fp32 and 3 in int4: 75 ms against
uniform bf16's 46 ms). ``quantize`` still builds an fp32 island for an explicit
``layer_bits`` of 32."""


def switch_key(a: int, b: int) -> tuple[int, int]:
    """The key of a change between precisions ``a`` and ``b`` (either way round) in
    ``LayerProfile.switch_ms``."""
    return (max(a, b), min(a, b))


def _pair_key(text: str) -> tuple[int, int]:
    a, b = (int(x) for x in str(text).split(","))
    return switch_key(a, b)


def check_base(base: int) -> int:
    """``base`` if it is one of ``BASES``; else ``TaskError`` naming what is allowed."""
    if base not in BASES:
        raise TaskError(
            f"per-layer precision runs on a base of quant_bits 32 or 16, not {base!r}; "
            "set quant_bits to 32 or 16 with bit_budget"
        )
    return int(base)

SENSITIVITY_ROWS = 64
"""Calibration rows (the first training rows) the sensitivity is averaged over."""

PROFILE_VERSION = 7

MILP_TIME_LIMIT_S = 30.0
"""Seconds HiGHS may search for the optimal allocation of one trial."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerProfile:
    """The teacher's per-layer sensitivity to quantization (``measure_sensitivity``).

    Attributes:
        weights: Weight elements of each allocatable layer of the teacher.
        sensitivity: Mean KL divergence (nats per row or token) of the teacher's outputs
            when that layer alone is stored at each precision; 0 at 32.
        rows: Calibration rows the divergence was averaged over.
        latency_ms: Median time (ms) of each allocated layer at each precision, timed
            inside the model on the task's latency workload (``measure_layer_latency``;
            before version 6, each layer alone); empty when not measured (a
            ``latency_budget`` then cannot be allocated).
        hardware: Where ``latency_ms`` was measured (``describe_hardware``).
        base: The precision the rest of the model ran in while it was measured
            (``BASES``); allocations on another base need their own profile.
        order: The allocated layers in the order the model calls them (``call_order``);
            neighbours in it are where a change of precision costs ``switch_ms``.
        switch_ms: ms each change of precision between neighbours costs beyond the
            table, by ``switch_key`` pair (``measure_switch_costs``); empty where not
            measured (versions before 7, or too few layers), and no change is charged.
    """

    weights: dict[str, int]
    sensitivity: dict[str, dict[int, float]]
    rows: int
    version: int = PROFILE_VERSION
    latency_ms: dict[str, dict[int, float]] = field(default_factory=dict)
    hardware: str = ""
    base: int = 32
    order: list[str] = field(default_factory=list)
    switch_ms: dict[tuple[int, int], float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (precisions as string keys)."""
        return {
            "version": self.version,
            "rows": self.rows,
            "weights": dict(self.weights),
            "sensitivity": {
                n: {str(b): float(v) for b, v in s.items()} for n, s in self.sensitivity.items()
            },
            "latency_ms": {
                n: {str(b): float(v) for b, v in t.items()} for n, t in self.latency_ms.items()
            },
            "hardware": self.hardware,
            "base": self.base,
            "order": list(self.order),
            "switch_ms": {f"{a},{b}": float(v) for (a, b), v in self.switch_ms.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerProfile:
        """Inverse of ``to_dict``.

        Raises:
            TaskError: ``data`` is not a profile this version wrote.
        """
        try:
            # Profiles stored on studies by earlier versions still read: version 2 has no
            # timing table, 2 and 3 no bf16 (16) entries, which the allocation then skips;
            # 4 has no base (always 32). 5 adds bf16-base profiles; before 6, the table
            # timed each layer alone (student_layer_latency then times every student);
            # before 7, no switch costs (none is charged).
            version = int(data["version"])
            if version not in (2, 3, 4, 5, 6, PROFILE_VERSION):
                raise ValueError(f"version {data['version']}")
            return cls(
                version=version,
                weights={str(n): int(w) for n, w in data["weights"].items()},
                sensitivity={
                    str(n): {int(b): float(v) for b, v in s.items()}
                    for n, s in data["sensitivity"].items()
                },
                rows=int(data["rows"]),
                latency_ms={
                    str(n): {int(b): float(v) for b, v in t.items()}
                    for n, t in data.get("latency_ms", {}).items()
                },
                hardware=str(data.get("hardware", "")),
                base=check_base(int(data.get("base", 32))),
                order=[str(n) for n in data.get("order", [])],
                switch_ms={_pair_key(k): float(v)
                           for k, v in data.get("switch_ms", {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError, TaskError) as exc:
            raise TaskError(f"not a layer sensitivity profile: {exc}") from None


@dataclass(frozen=True)
class Allocation:
    """One trial's per-layer precisions and what they cost.

    Attributes:
        layer_bits: Precision of every allocated layer (``allocated``: a tied output
            projection too), by its (current) name.
        weight_bytes: Bytes the allocated layers' weights add to the model file (a tied
            layer's only where it is stored apart: ``layer_costs``).
        weights: The weight elements of the layers that own their weight
            (``allocatable``): what ``bit_budget`` and ``effective_bits`` are per.
        sensitivity: The summed (scaled) sensitivity the allocation minimised.
        time_share: The allocated layers' estimated time (from the profile's per-layer
            table) as a fraction of theirs at fp32; None without a timing table.
    """

    layer_bits: dict[str, int]
    weight_bytes: int
    weights: int
    sensitivity: float
    time_share: float | None = None

    @property
    def effective_bits(self) -> float:
        """Stored bits per weight element of the allocated layers."""
        return 8.0 * self.weight_bytes / self.weights if self.weights else float("nan")


@dataclass(frozen=True)
class _Switches:
    """What changes of precision between neighbouring layers cost (``LayerProfile``'s
    ``switch_ms``): ``pairs`` are the neighbours, in execution order."""

    pairs: list[tuple[str, str]]
    ms: dict[tuple[int, int], float]

    def cost(self, a: int, b: int) -> float:
        return 0.0 if a == b else self.ms.get(switch_key(a, b), 0.0)

    def total(self, choice: Mapping[str, int]) -> float:
        return sum(self.cost(choice[a], choice[b]) for a, b in self.pairs)


def _neighbours(names: list[str], origins: Mapping[str, str],
                profile: LayerProfile) -> _Switches | None:
    """The profile's switch costs over ``names`` (a student's layers, by their teacher
    ``origins``) in the teacher's execution order: a layer pruning removed drops out,
    and the layers either side of it become neighbours. None where the profile has none."""
    if not profile.switch_ms or not profile.order:
        return None
    rank = {n: i for i, n in enumerate(profile.order)}
    ordered = sorted(names, key=lambda n: rank.get(origins[n], len(rank)))
    return _Switches(pairs=list(zip(ordered, ordered[1:], strict=False)),
                     ms=dict(profile.switch_ms))


def _time_of(choice: Mapping[str, int], times: Mapping[str, Mapping[int, float]],
             changes: _Switches | None) -> float:
    """The estimated time of ``choice``: its layers' table times plus its changes'."""
    extra = changes.total(choice) if changes is not None else 0.0
    return sum(times[n][b] for n, b in choice.items()) + extra


def refuse_unallocatable(model: nn.Module) -> None:
    """Raise ``TaskError`` when per-layer allocation cannot cover ``model``'s weights."""
    others = [n for n, m in model.named_modules() if isinstance(m, (nn.LSTM, nn.GRU))]
    others += conv_names(model)
    if others:
        raise TaskError(
            f"bit_budget allocates precision among nn.Linear layers, and "
            f"{type(model).__name__} also has convolution/RNN layers ({others[0]!r}, …) "
            "whose weights would stay fp32 outside the budget; search quant_bits for this "
            "model instead"
        )
    if not allocatable(model):
        raise TaskError(
            f"bit_budget allocates precision among nn.Linear layers and "
            f"{type(model).__name__} has none (untied); search quant_bits instead"
        )


def tag_origins(model: nn.Module) -> nn.Module:
    """Record each module's current name on it (``ORIGIN_ATTR``), before pruning."""
    for name, m in model.named_modules():
        m.__dict__.setdefault(ORIGIN_ATTR, name)
    return model


def allocatable(model: nn.Module) -> list[str]:
    """Names of the ``nn.Linear`` layers whose weight no other module shares: the layers
    whose elements a ``bit_budget`` counts."""
    owners: dict[int, int] = {}
    for _, m in model.named_modules():
        for p in m.parameters(recurse=False):
            owners[p.data_ptr()] = owners.get(p.data_ptr(), 0) + 1
    return [
        name for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and owners.get(m.weight.data_ptr(), 0) == 1
    ]


def tied_layers(model: nn.Module) -> list[str]:
    """Names of the ``nn.Linear`` layers whose weight is an ``nn.Embedding``'s table (a
    tied output projection, ``tie_word_embeddings``).

    An allocation may store such a layer apart at another precision (uniform int8 does:
    on ``tiny_lm`` an int8 ``lm_head`` was 4–6 % of decode time); the embedding then
    keeps the table at the base precision, so the copy's bytes are added to the file.
    At the base precision it stays tied and adds nothing (``layer_costs``)."""
    tables = {m.weight.data_ptr() for m in model.modules()  # subclasses too (scaled ones)
              if isinstance(m, nn.Embedding) and m.weight.numel()}
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and m.weight.data_ptr() in tables]


def allocated(model: nn.Module) -> list[str]:
    """The layers an allocation gives a precision, in module order: ``allocatable`` and
    ``tied_layers``."""
    chosen = set(allocatable(model)) | set(tied_layers(model))
    return [name for name, _ in model.named_modules() if name in chosen]


def quantize_layer(layer: nn.Linear, bits: int, base: int = 32) -> nn.Module:
    """A copy of ``layer`` (fp32) stored at ``bits`` exactly as ``quantize`` stores it in a
    model of precision ``base``: on a bf16 base, a bf16 ``nn.Linear`` at 16 and a
    ``Float32Island`` around the fp32-base layer otherwise."""
    if check_base(base) == 16 and bits in LAYER_BITS:
        if bits == 16:
            return copy.deepcopy(layer).float().cpu().eval().to(torch.bfloat16)
        return Float32Island(quantize_layer(layer, bits))
    holder = nn.Sequential(copy.deepcopy(layer).float().cpu().eval())
    if bits == 16:
        holder = bf16_linear(holder, {"0"})
    elif bits == 8:
        holder = int8_dynamic(holder, {"0"})
    elif bits == 4:
        holder = int4_weight_only(holder, {"0"})
    elif bits != 32:
        raise TaskError(f"layer precision {bits} is not supported; allowed: {ALLOWED}")
    return canonicalize(holder)[0]


def weight_bytes(layer: nn.Linear, bits: int) -> int:
    """Bytes the model file stores for ``layer``'s weight at ``bits`` (no bias)."""
    tensors = plain_tensors(nn.Sequential(quantize_layer(layer, bits)))
    return sum(t.numel() * t.element_size() for k, t in tensors.items()
               if k.startswith("0.weight"))


def layer_costs(
    model: nn.Module, names: list[str], base: int = 32
) -> dict[str, dict[int, int]]:
    """``{layer: {bits: weight bytes}}`` for ``names`` of ``model`` (exact, per shape):
    the bytes each choice adds to the model file on ``base``. A tied layer
    (``tied_layers``) adds none at ``base`` (its table is stored once, with the
    embedding, at the base precision) and its own bytes at any other precision (a copy
    stored apart, beside the embedding's table)."""
    cache: dict[tuple[int, int], dict[int, int]] = {}
    tied = set(tied_layers(model))
    out = {}
    for name in names:
        m = model.get_submodule(name)
        shape = (m.out_features, m.in_features)
        if shape not in cache:
            probe = nn.Linear(m.in_features, m.out_features, bias=False)
            cache[shape] = {b: weight_bytes(probe, b) for b in LAYER_BITS}
        out[name] = {**cache[shape], check_base(base): 0} if name in tied else cache[shape]
    return out


def _kl(reference: torch.Tensor, logits: torch.Tensor) -> float:
    # In float64: a bf16 layer moves the logits by ~1e-3 of their size, a KL near 1e-9,
    # which float32's log-softmax (~1e-7 absolute error) would round to noise.
    p = F.log_softmax(reference.double(), dim=-1)
    q = F.log_softmax(logits.double(), dim=-1)
    kl = (p.exp() * (p - q)).sum(-1)
    return float(kl.mean())


@torch.inference_mode()
def measure_sensitivity(
    model: nn.Module, calibration: Inputs, *, bits: tuple[int, ...] | None = None,
    base: int = 32,
) -> LayerProfile:
    """The KL divergence of ``model``'s outputs when each layer alone is stored at ``bits``
    (default: every precision ``base`` offers, ``BASE_BITS``, but ``base`` itself; a
    precision without a value is not offered by ``allocate``).

    The divergence is from ``model`` as it runs on ``base``: itself at 32; its bf16 copy
    (``BFloat16Module``, every layer at 16) at 16, where the copy is perturbed. So a
    layer's value is what storing it lower adds to what the base already does, 0 at the
    base's own precision and > 0 below it on either base.

    ``model`` (the teacher) is not modified: a linearized copy is perturbed one layer at a
    time and restored.

    Raises:
        TaskError: the model has layers allocation cannot cover (``refuse_unallocatable``).
    """
    from objectives._task import forward

    check_base(base)
    work = linearize_conv1d(copy.deepcopy(model)).float().cpu().eval()
    refuse_unallocatable(work)
    # Every Linear, tied ones too: a tied output projection is not allocated while its
    # weight is shared, but becomes a layer of its own once the table is stored int8.
    names = [n for n, m in work.named_modules() if isinstance(m, nn.Linear)]
    run, tree = _on_base(work, base)
    reference = forward(run, calibration)
    sensitivity: dict[str, dict[int, float]] = {}
    for name in names:
        original = tree.get_submodule(name)
        sensitivity[name] = {base: 0.0}
        for b in bits if bits is not None else [b for b in BASE_BITS[base] if b != base]:
            set_layer(tree, name, quantize_layer(work.get_submodule(name), b, base))
            try:
                sensitivity[name][b] = max(0.0, _kl(reference, forward(run, calibration)))
            finally:
                set_layer(tree, name, original)
    rows = calibration_rows(calibration)
    weights = {n: work.get_submodule(n).weight.numel() for n in names}
    return LayerProfile(weights=weights, sensitivity=sensitivity, rows=rows, base=base)


def _on_base(work: nn.Module, base: int) -> tuple[nn.Module, nn.Module]:
    """``(model to run, module tree whose layers are swapped)`` for ``work`` (fp32, left
    unchanged) on ``base``: ``work`` itself at 32, a bf16 copy (``BFloat16Module``) at 16."""
    if base == 32:
        return work, work
    run = BFloat16Module(copy.deepcopy(work))
    return run, run.module


def calibration_rows(inputs: Inputs) -> int:
    """Rows in ``inputs`` (a tensor or a mapping of tensors)."""
    first = next(iter(inputs.values())) if isinstance(inputs, Mapping) else inputs
    return int(first.shape[0])


def _fp32_base_costs(work: nn.Module) -> tuple[dict[str, dict[int, int]], int]:
    """``(layer_costs on an fp32 base, weight elements the budget counts)`` of ``work``
    (a linearized copy)."""
    costs = layer_costs(work, allocated(work))
    return costs, sum(work.get_submodule(n).weight.numel() for n in allocatable(work))


def budget_bounds(model: nn.Module) -> tuple[float, float]:
    """Fewest and most effective bits per weight an allocation of ``model`` can have on
    an fp32 base (a tied layer stored apart counts its bytes, not its elements)."""
    costs, weights = _fp32_base_costs(linearize_conv1d(copy.deepcopy(model)))
    low = sum(min(c.values()) for c in costs.values())
    high = sum(max(c.values()) for c in costs.values())
    return 8.0 * low / weights, 8.0 * high / weights


def uniform_budget(model: nn.Module, bits: int) -> float:
    """The effective bits per weight (``Allocation.effective_bits``) of ``model`` with
    every allocated layer at ``bits`` (``LAYER_BITS``) on an fp32 base — at 8 and 4
    exactly what uniform ``quant_bits`` stores, a tied output projection stored apart
    included: the smallest ``bit_budget`` that can hold that allocation.

    Raises:
        TaskError: ``bits`` is not one of ``LAYER_BITS``, or ``model`` has layers
            allocation cannot cover (``refuse_unallocatable``).
    """
    if bits not in LAYER_BITS:
        raise TaskError(f"layer precision {bits!r} is not supported; allowed: {ALLOWED}")
    work = linearize_conv1d(copy.deepcopy(model))
    refuse_unallocatable(work)
    costs, weights = _fp32_base_costs(work)
    return 8.0 * sum(c[bits] for c in costs.values()) / weights


def fastest_allocation(model: nn.Module, profile: LayerProfile) -> Allocation:
    """The allocation of ``model`` that ``profile``'s timing table (switch costs
    included) puts fastest at any size: ``allocate`` with the size unbound
    (``bit_budget`` above the most an allocation of ``model`` can take) and
    ``latency_saving`` 1, so among the fastest the least sensitive. Its
    ``effective_bits`` is the smallest ``bit_budget`` that reaches it.

    Raises:
        TaskError: as ``allocate`` — the profile has no timing table, or belongs to
            another model.
    """
    _, most = budget_bounds(model)
    return allocate(model, profile, most + 1.0, latency_saving=1.0)


def allocate(
    model: nn.Module,
    profile: LayerProfile,
    bit_budget: float,
    latency_budget: float = 0.0,
    latency_saving: float = 0.0,
    *,
    latency_ms: Mapping[str, Mapping[int, float]] | None = None,
) -> Allocation:
    """The per-layer precisions of ``model`` (a pruned copy of the profiled teacher) with
    the least summed sensitivity whose weights fit ``bit_budget`` bits per element.

    Layer times are ``latency_ms`` where given (``model``'s own timing table, by its layer
    names: ``student_layer_latency``), else the profile's, scaled by the share of each
    layer's weights kept (an estimate that ignores per-call overhead).

    With ``latency_budget`` > 0, also the layers' summed time at most ``latency_budget``
    times theirs at fp32
    — or, where no allocation within ``bit_budget`` is that fast, at most the fastest
    one's (``Allocation.time_share`` records what was reached).

    With ``latency_saving`` in (0, 1], the summed time at most ``T_least −
    latency_saving · (T_least − T_fastest)``, where ``T_least`` is the time of the least
    sensitive allocation within ``bit_budget`` and ``T_fastest`` that of the fastest one:
    1 is the least sensitive of the fastest allocations, and every value between is a
    point of the (sensitivity, time) trade-off this size and hardware can reach.

    Raises:
        TaskError: a layer the profile does not know, a layer of a tagged model
            (``tag_origins``) without its origin, a budget below the fewest bits this
            model can be stored in, a ``latency_budget`` or ``latency_saving`` with a
            profile that has no timing table, a ``latency_saving`` outside [0, 1], or both.
    """
    work = linearize_conv1d(model)
    refuse_unallocatable(work)
    names = allocated(work)
    tied = set(tied_layers(work))
    costs = layer_costs(work, names, profile.base)
    weights = {n: work.get_submodule(n).weight.numel() for n in names}
    untagged = [n for n in names if ORIGIN_ATTR not in vars(work.get_submodule(n))]
    if untagged and len(untagged) < len(names):  # an operator rebuilt a layer untagged
        raise TaskError(
            f"layer {untagged[0]!r} lost the name of the teacher layer it came from "
            "(an operator replaced it without carry_origin), so its sensitivity cannot be "
            "matched; this is a slimsearch bug — fix bit_budget at 0 meanwhile"
        )
    scaled: dict[str, dict[int, float]] = {}
    timed: dict[str, dict[int, float]] = {}
    origins = {n: getattr(work.get_submodule(n), ORIGIN_ATTR, n) for n in names}
    for n in names:
        origin = origins[n]
        if n in tied and origin not in profile.sensitivity:
            # A profile stored before tied layers were measured: the layer stays tied.
            scaled[n] = {b: 0.0 if b == profile.base else math.inf for b in LAYER_BITS}
            if latency_ms is not None and n in latency_ms:
                timed[n] = {b: float(latency_ms[n].get(b, math.inf)) for b in LAYER_BITS}
            elif origin in profile.latency_ms:
                timed[n] = {b: profile.latency_ms[origin].get(b, math.inf)
                            for b in LAYER_BITS}
            continue
        if origin not in profile.sensitivity:
            raise TaskError(
                f"layer {n!r} (from {origin!r}) has no measured sensitivity; the profile "
                "belongs to another model"
            )
        share = weights[n] / max(1, profile.weights.get(origin, weights[n]))
        scaled[n] = {b: profile.sensitivity[origin].get(b, math.inf) * share
                     for b in LAYER_BITS}
        if latency_ms is not None:
            if n not in latency_ms:
                raise TaskError(f"layer {n!r} has no time in the timing table passed; "
                                "measure it on this model (student_layer_latency)")
            timed[n] = {b: float(latency_ms[n].get(b, math.inf)) for b in LAYER_BITS}
        elif origin in profile.latency_ms:
            timed[n] = {b: profile.latency_ms[origin].get(b, math.inf) * share
                        for b in LAYER_BITS}
    # Time is usable only where the table covers every layer; a precision the table
    # lacks (a profile stored before it was added) is then not an option.
    full = timed if timed and len(timed) == len(names) else None
    times = None
    if full is not None:
        # An option needs both a sensitivity and a time: a precision the table lacks (a
        # profile stored before it was added), or one the base does not offer (fp32 on a
        # bf16 base, timed but not measured for sensitivity), is in neither solve.
        times = {}
        for n in names:
            scaled[n] = {b: s if math.isfinite(full[n][b]) else math.inf
                         for b, s in scaled[n].items()}
            times[n] = {b: t if math.isfinite(scaled[n][b]) else math.inf
                        for b, t in full[n].items()}
    if not 0.0 <= latency_saving <= 1.0:
        raise TaskError(f"latency_saving={latency_saving:g} is not a share; allowed: 0 to 1")
    if latency_saving > 0 and latency_budget > 0:
        raise TaskError("latency_saving and latency_budget both bound the allocation's "
                        "time; set one of them to 0")
    bound = "latency_budget" if latency_budget > 0 else "latency_saving"
    if (latency_budget > 0 or latency_saving > 0) and times is None:
        raise TaskError(
            f"{bound} needs the per-layer timing table, which this layer profile "
            "lacks; measure the profile again (objectives.task_profile) or set "
            f"{bound} to 0"
        )
    # The budget is bits per element of the layers that own their weight; a tied layer
    # stored apart adds its copy's bytes (layer_costs) but no elements.
    total_weights = sum(w for n, w in weights.items() if n not in tied)
    capacity = math.floor(bit_budget * total_weights / 8.0)
    fewest = sum(min(costs[n].values()) for n in names)
    if fewest > capacity:
        raise TaskError(
            f"bit_budget={bit_budget:g} is below the {8.0 * fewest / total_weights:.2f} "
            "effective bits this model's layers take at their lowest precision; raise "
            "bit_budget's low bound"
        )
    time_cap = None
    fp32_time = None if full is None else sum(full[n][32] for n in names)
    # Each change of precision between neighbours costs time of its own (measured with
    # the table: measure_switch_costs); every estimate of time below includes it.
    changes = None if times is None else _neighbours(names, origins, profile)
    if (latency_budget > 0 or latency_saving > 0) and times is not None and fp32_time:
        # least time within the size
        fastest = _solve(names, costs, times, capacity, switches=changes)
        reachable = _time_of(fastest, times, changes)
        if latency_budget > 0:
            time_cap = max(latency_budget * fp32_time, reachable)
        else:
            least = _solve(names, costs, scaled, capacity)  # least sensitive, any time
            t_least = _time_of(least, times, changes)
            time_cap = max(t_least - latency_saving * (t_least - reachable), reachable)
        time_cap *= 1 + 1e-9  # the reachable time itself must stay feasible
    choice = _solve(names, costs, scaled, capacity, times=times, time_cap=time_cap,
                    switches=changes if time_cap is not None else None)
    used = sum(costs[n][choice[n]] for n in names)
    share_of_fp32 = None
    if times is not None and fp32_time:
        share_of_fp32 = _time_of(choice, times, changes) / fp32_time
    return Allocation(
        layer_bits=choice,
        weight_bytes=used,
        weights=total_weights,
        sensitivity=sum(scaled[n][choice[n]] for n in names),
        time_share=share_of_fp32,
    )


def _solve(
    names: list[str],
    costs: dict[str, dict[int, int]],
    sensitivity: dict[str, dict[int, float]],
    capacity: int,
    *,
    times: dict[str, dict[int, float]] | None = None,
    time_cap: float | None = None,
    switches: _Switches | None = None,
    time_limit: float = MILP_TIME_LIMIT_S,
) -> dict[str, int]:
    """Multiple-choice knapsack solved to optimality by HiGHS (see the module docstring),
    then checked in integer bytes: minimise the summed ``sensitivity`` (any per-option
    cost: ``allocate`` also passes the times) with bytes ≤ ``capacity`` and, with
    ``time_cap``, summed ``times`` ≤ it.

    With ``switches``, each pair of neighbours at different precisions costs its switch
    time: in the time constraint with ``time_cap``, else in the objective (which is then
    a time: ``allocate``'s fastest solve). A change is a variable z ≥ x(a, p) + x(b, q) − 1
    for each ordered pair of precisions p ≠ q of neighbours a, b (z ≥ 0, only ever
    charged, so the optimum puts it at exactly 1 where the change is made and 0 where not).

    Raises:
        TaskError: HiGHS found no feasible allocation (infeasible, or out of time).
    """
    import numpy as np
    from scipy.optimize import Bounds, LinearConstraint, milp

    options = [(n, b) for n in names for b in LAYER_BITS
               if math.isfinite(sensitivity[n].get(b, math.inf))]
    s = np.array([sensitivity[n][b] for n, b in options])
    c = np.array([costs[n][b] for n, b in options], dtype=float)
    # Ties in sensitivity go to the smaller layer file, never outweighing a real difference.
    top = float(s.max()) if s.size and s.max() > 0 else 1.0
    objective = s / top + 1e-9 * c / max(1.0, float(c.sum()))
    index = {o: j for j, o in enumerate(options)}
    # One change variable per neighbours (a, b) and precisions (p, q), p != q, that cost.
    change = [(j, index[(a, p)], index[(b, q)])
              for j, (a, b, p, q) in enumerate(
                  (a, b, p, q) for a, b in (switches.pairs if switches else [])
                  for p in LAYER_BITS for q in LAYER_BITS
                  if (a, p) in index and (b, q) in index and switches.cost(p, q) > 0)]
    z_ms = np.array([switches.cost(options[i][1], options[k][1]) for _, i, k in change]
                    if switches else [], dtype=float)
    width = len(options) + len(change)
    pick = np.zeros((len(names), width))
    for j, (n, _) in enumerate(options):
        pick[names.index(n), j] = 1.0
    size = np.concatenate([c, np.zeros(len(change))])
    constraints = [
        LinearConstraint(pick, 1.0, 1.0),
        LinearConstraint(size.reshape(1, -1), 0.0, float(capacity)),
    ]
    if change:
        link = np.zeros((len(change), width))
        for row, (j, i, k) in enumerate(change):
            link[row, i] = link[row, k] = 1.0
            link[row, len(options) + j] = -1.0
        constraints.append(LinearConstraint(link, -np.inf, 1.0))
    z_cost = np.zeros(len(change))
    if times is not None and time_cap is not None:
        t = np.concatenate([[times[n][b] for n, b in options], z_ms])
        constraints.append(LinearConstraint(t.reshape(1, -1), 0.0, float(time_cap)))
    elif change:
        z_cost = z_ms / top  # the objective is a time: changes add to it
    result = milp(np.concatenate([objective, z_cost]), constraints=constraints,
                  integrality=np.concatenate([np.ones(len(options)), np.zeros(len(change))]),
                  bounds=Bounds(0, 1),
                  options={"time_limit": time_limit, "mip_rel_gap": 0.0})
    if result.x is None:
        raise TaskError(
            f"the bit allocation of {len(names)} layers found no solution within "
            f"{time_limit:g} s ({result.message}); raise bit_budget's low bound or search "
            "quant_bits"
        )
    if result.status != 0:  # stopped early (time limit) with a feasible allocation
        logger.warning(
            "bit allocation of %d layers: HiGHS stopped before proving optimality (%s); "
            "using the best allocation it found, which may not be the optimum",
            len(names), result.message,
        )
    choice = {n: b for (n, b), x in zip(options, result.x[:len(options)], strict=True)
              if x > 0.5}
    # Integer repair: the solver's tolerances may overshoot by a few bytes.
    order = sorted(LAYER_BITS, reverse=True)
    while sum(costs[n][choice[n]] for n in names) > capacity:
        best = None
        for n in names:
            lower = [b for b in order
                     if b < choice[n] and math.isfinite(sensitivity[n].get(b, math.inf))]
            if not lower:
                continue
            b = lower[0]
            saved = costs[n][choice[n]] - costs[n][b]
            worse = sensitivity[n][b] - sensitivity[n][choice[n]]
            if saved > 0 and (best is None or worse / saved < best[0]):
                best = (worse / saved, n, b)
        if best is None:  # pragma: no cover - fewest <= capacity was checked
            raise TaskError("the bit allocation cannot meet its budget")
        choice[best[1]] = best[2]
    return choice

