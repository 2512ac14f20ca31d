"""Configurations a new study evaluates first: known-good seeds and warm starts.

Seeds (in this order, each only if it lies in the space, and leaving out precisions
the hardware probe measured more than ``SLOWER_MARGIN`` slower than fp32 on the teacher;
a seed that also prunes is kept at fp32 instead): the teacher as is (no pruning, fp32),
int8 only, bf16 only, prune 0.25 + int8, prune 0.5 + int8; for transformers also int8
with int8 embeddings and a pruned vocabulary, and that plus a quarter of the heads and
half the FFN neurons pruned; for decoders a third of the layers removed with int8, that
with half the MLP and int8 embeddings, and half the layers removed with int8 and int8
embeddings; with ``bit_budget`` 8.5 effective bits (about int8's size), that with prune
0.25, and 6.0. In a space that searches ``bit_budget`` instead of ``quant_bits``, an int8
(int4) seed is seeded at a budget of 8.5 (4.5) bits instead — or what uniform int8
(int4) takes on the teacher where that is more (a tied output projection stored apart
adds its bytes: ``objectives.uniform_budget``) — (at ``latency_saving`` 1,
the fastest allocation of that size, where the space searches it), and an fp32 one at 32 bits
(every layer fp32) where the range reaches it, and a bf16 seed at 16 bits on a bf16 base
where the space searches one; where it also offers uniform int8 (``quant_bits`` 8 beside
the bases: ``SearchSpace.per_layer_precision(uniform=...)``), an int8 seed stays uniform
int8, without the allocation's parameters. There the probe times int8 and int4 too,
so where they are slower than fp32 the seeds that prune are seeded at 32 bits, as a
uniform space seeds them at fp32. Parameters a
seed does not name take the trial config's default when the space allows it, else the
middle of the range (geometric middle for log ranges) or the middle choice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import TrialState

from objectives import LAYER_BITS, CompressionConfig
from search.study import TRIAL_SEED_CONFIG
from spaces import Choice, Fixed, FloatRange, SearchSpace

SEEDS: tuple[dict[str, Any], ...] = (
    {"prune_ratio": 0.0, "quant_bits": 32},
    {"prune_ratio": 0.0, "quant_bits": 8},
    {"prune_ratio": 0.0, "quant_bits": 16},
    {"prune_ratio": 0.25, "quant_bits": 8},
    {"prune_ratio": 0.5, "quant_bits": 8},
    # transformers (seeds naming parameters the space lacks are skipped)
    {"quant_bits": 8, "embed_bits": 8, "prune_vocab": True},
    {"attn_prune_ratio": 0.25, "ffn_prune_ratio": 0.5, "quant_bits": 8, "embed_bits": 8,
     "prune_vocab": True},
    # decoders: a third of the layers, that with half the MLP and int8 embeddings, then
    # half the layers (at batch-1 decode the per-layer cost dominates)
    {"depth_prune_ratio": 0.33, "quant_bits": 8},
    {"depth_prune_ratio": 0.33, "ffn_prune_ratio": 0.5, "quant_bits": 8, "embed_bits": 8},
    {"depth_prune_ratio": 0.5, "quant_bits": 8, "embed_bits": 8},
    # per-layer precision (bit_budget): about int8's size, then pruned, then tighter
    {"prune_ratio": 0.0, "bit_budget": 8.5},
    {"prune_ratio": 0.25, "bit_budget": 8.5},
    {"prune_ratio": 0.0, "bit_budget": 6.0},
)

def _middle(param: FloatRange | Choice) -> Any:
    if isinstance(param, Choice):
        return param.choices[len(param.choices) // 2]
    if param.log:
        return math.sqrt(param.low * param.high)
    return (param.low + param.high) / 2


def _base(space: SearchSpace) -> dict[str, Any]:
    defaults = CompressionConfig()
    base: dict[str, Any] = {}
    for name, param in space.parameters.items():
        if isinstance(param, Fixed):
            continue
        default = getattr(defaults, name, None)
        base[name] = default if space.allows(name, default) else _middle(param)
    return base


def space_precisions(space: SearchSpace) -> tuple[int, ...]:
    """The precisions ``space`` may give a trial's layers (fp32 always included): its
    ``quant_bits`` values, and with a ``bit_budget`` range the precisions an allocation
    chooses from (``LAYER_BITS``), so the hardware probe times those too."""
    param = space.parameters.get("quant_bits")
    values: tuple[Any, ...] = ()
    if isinstance(param, Choice):
        values = param.choices
    elif isinstance(param, Fixed):
        values = (param.value,)
    if isinstance(space.parameters.get("bit_budget"), FloatRange):
        values = (*values, *LAYER_BITS)
    return tuple(sorted({32, *(int(v) for v in values)}, reverse=True))


SLOWER_MARGIN = 1.15
"""A precision counts as slower than fp32 only beyond this factor: nearer, it is a tie
that this machine's own timing noise can produce (``python -m benchmarks --only noise``),
and a tie at a quarter of the size is worth seeding."""


def slower_precisions(baseline: Mapping[str, Any]) -> dict[int, float]:
    """Precisions the hardware probe found slower than fp32 by more than
    ``SLOWER_MARGIN``: ``{bits: times slower}``.

    Read from the baseline's ``precision_latency_ms`` (empty when it was not probed).
    """
    probe = {int(k): float(v) for k, v in (baseline.get("precision_latency_ms") or {}).items()}
    fp32 = probe.get(32)
    if not fp32:
        return {}
    return {b: ms / fp32 for b, ms in probe.items() if b != 32 and ms > SLOWER_MARGIN * fp32}


def seed_configs(
    space: SearchSpace,
    skip_bits: tuple[int, ...] = (),
    uniform_budgets: Mapping[int, float] | None = None,
) -> list[dict[str, Any]]:
    """The seed configs that lie in ``space`` (searched parameters only), de-duplicated.

    Seeds whose ``quant_bits`` is in ``skip_bits`` (precisions measured slower than fp32
    on this hardware, see ``slower_precisions``) are left out — except those that also
    prune: their structure is still worth a first look, so they are seeded at fp32.

    ``uniform_budgets`` (``{8: bits, 4: bits}``: ``objectives.uniform_budget`` of the
    teacher) raises the budget an int8 (int4) seed becomes in a per-layer space to what
    uniform int8 (int4) takes on this model where that is above ``BUDGET_OF_BITS``: a
    tied output projection stored apart adds its bytes (on ``tiny_lm`` about 9.5 bits
    for uniform int8), so 8.5 bits could not hold the fastest allocation of int8's size.
    """
    base = _base(space)
    params = space.parameters
    out: list[dict[str, Any]] = []
    for seed in SEEDS:
        if seed.get("quant_bits") in skip_bits:
            if not any(k.endswith("prune_ratio") and v > 0 for k, v in seed.items()):
                continue
            seed = {**seed, "quant_bits": 32}
        seed = _as_budget(seed, space, uniform_budgets or {})
        config = dict(base)
        ok = True
        for name, value in seed.items():
            if name not in params:
                # dropped: the trial uses the config default; the seed only fits if equal
                ok = getattr(CompressionConfig(), name, None) == value
            elif not space.allows(name, value):
                ok = False
            elif not isinstance(params[name], Fixed):
                config[name] = value
            if not ok:
                break
        config = _used(space, config)
        if ok and config not in out:
            out.append(config)
    return out


def _used(space: SearchSpace, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the parameters its trial would not draw (``SearchSpace.active``:
    a uniform int8 trial beside per-layer allocation has no ``bit_budget``)."""
    active = set(space.active(config))
    return {k: v for k, v in config.items() if k in active}


BUDGET_OF_BITS = {32: 32.0, 16: 16.0, 8: 8.5, 4: 4.5}
"""The ``bit_budget`` a uniform-precision seed becomes in a per-layer precision space:
about that precision's size (the stored int8/int4 scales add a fraction of a bit per
weight; bf16 stores none); 32 bits is every layer at fp32."""


def _seed_budget(bits: int, uniform_budgets: Mapping[int, float]) -> float:
    """``BUDGET_OF_BITS[bits]``, or for int8/int4 the model's own uniform size where it is
    larger, rounded up to a quarter bit (a budget a person can read back)."""
    budget = BUDGET_OF_BITS[bits]
    if bits in (8, 4) and bits in uniform_budgets:
        budget = max(budget, math.ceil(4.0 * float(uniform_budgets[bits]) + 1e-9) / 4.0)
    return budget


def _as_budget(seed: dict[str, Any], space: SearchSpace,
               uniform_budgets: Mapping[int, float]) -> dict[str, Any]:
    """``seed`` for a space that searches ``bit_budget`` instead of ``quant_bits``
    (``SearchSpace.per_layer_precision``): a uniform seed becomes the budget of about that
    precision's size (``BUDGET_OF_BITS``; fp32 — the teacher, and a pruning seed kept at
    fp32 where int8 is slower — becomes 32 bits where the range reaches it), so its
    structure (pruning, depth, embeddings) is seeded there too, with the allocation
    choosing the precisions. Where the space searches ``latency_saving`` up to 1, an
    int8 (int4) seed is seeded at 1: the fastest allocation of that size, which is
    uniform int8 wherever int8 is each layer's fastest precision within the budget — a
    uniform seed stands for a fast point of its size, and the least sensitive allocation
    of int8's size can be far slower (bf16 and int4 layers where those run slower than
    fp32). The budget seeds of ``SEEDS`` keep the space's default (0, the least
    sensitive allocation). Where the space also searches a bf16 base (``quant_bits``
    16 beside a budget), a bf16 seed becomes a budget of 16 bits on that base: every
    layer bf16 (the base offers nothing above 16), uniform bf16 itself."""
    bits = seed.get("quant_bits")
    budget = space.parameters.get("bit_budget")
    if (bits == 16 and "bit_budget" not in seed and isinstance(budget, FloatRange)
            and space.allows("quant_bits", 16) and space.allows("bit_budget", 16.0)):
        return {**seed, "bit_budget": 16.0}
    if (bits not in BUDGET_OF_BITS or "bit_budget" in seed or not isinstance(budget, FloatRange)
            or (bits != 32 and space.allows("quant_bits", bits))):
        return seed
    value = _seed_budget(bits, uniform_budgets)
    if not space.allows("bit_budget", value):
        return seed
    out = {**{k: v for k, v in seed.items() if k != "quant_bits"}, "bit_budget": value}
    saving = space.parameters.get("latency_saving")
    if bits in (8, 4) and isinstance(saving, FloatRange) and space.allows("latency_saving", 1.0):
        out["latency_saving"] = 1.0  # the fastest allocation of int8's (int4's) size
    return out


def warm_start_configs(
    storage: optuna.storages.BaseStorage, study_names: list[str], space: SearchSpace
) -> list[dict[str, Any]]:
    """Pareto-front configs of earlier studies that lie in ``space`` (to re-evaluate)."""
    searched = set(space.searched())
    out: list[dict[str, Any]] = []
    for name in study_names:
        study = optuna.load_study(study_name=name, storage=storage)
        for t in study.best_trials:
            config = {k: v for k, v in t.params.items() if k in searched}
            if set(config) != searched:
                config = _used(space, {**_base(space), **config})
            if all(space.allows(k, v) for k, v in config.items()) and config not in out:
                out.append(config)
    return out


def enqueue(study: optuna.Study, configs: list[Mapping[str, Any]], origin: str) -> int:
    """Enqueue ``configs`` not already evaluated or queued in ``study``; return how many."""
    seen = [
        t.params
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.WAITING,
                       TrialState.RUNNING)
    ]
    n = 0
    for config in configs:
        if dict(config) in seen:
            continue
        study.enqueue_trial(dict(config), user_attrs={TRIAL_SEED_CONFIG: origin})
        seen.append(dict(config))
        n += 1
    return n
