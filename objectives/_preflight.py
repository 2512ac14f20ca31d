"""Pre-flight: does an operator setting really apply to this task's model?

A search must not spend trials on a setting that does nothing to the model in hand (int8
on layers the quantizer cannot touch, a pruning ratio that only shrinks the head) nor on
one that cannot run at all. ``check_setting`` applies one setting to a copy of the
teacher — once, before any trial — and says why it should be refused:

* ``quant_bits`` 16/8/4: the copy is quantized exactly as a trial's would be and its
  ``quantization_coverage`` must reach ``MIN_QUANT_COVERAGE`` of the weight elements;
* ``prune_ratio``, ``attn_prune_ratio``, ``ffn_prune_ratio``, ``depth_prune_ratio``: the
  copy is pruned and must lose at least ``MIN_PRUNE_EFFECT`` × ratio of its weight
  elements — matrices and kernels, as ``quantization_coverage`` counts them, not
  embedding tables (a ratio of 0.5 that removes 2 % of them is refused, naming the layer
  types it left whole); ``attn_prune_ratio`` is judged on the attention blocks' weights
  alone, since attention is a small share of a decoder with grouped-query attention;
* ``embed_bits`` 8, ``prune_vocab``: the operator must apply without error;
* ``bit_budget``: every weight layer must be an allocatable ``nn.Linear`` and the budget
  at least the fewest effective bits the teacher's layers can be stored in (all int4).

Fine-tuning settings (temperature, alpha, batch size, …) apply to every model.
"""

from __future__ import annotations

import copy

from torch import nn

from objectives._config import CompressionConfig
from objectives._coverage import _EMBEDDINGS, quantization_coverage
from objectives._errors import TaskError
from objectives._task import Task
from objectives.operators._conv1d import linearize_conv1d

MIN_QUANT_COVERAGE = 0.5
"""A precision must cover at least this share of the weight elements to be searched."""
MIN_PRUNE_EFFECT = 0.25
"""A pruning ratio ``r`` must remove at least ``MIN_PRUNE_EFFECT * r`` of the weights."""

_PRUNE_PARAMS = ("prune_ratio", "attn_prune_ratio", "ffn_prune_ratio", "depth_prune_ratio")
CHECKED = ("quant_bits", *_PRUNE_PARAMS, "embed_bits", "prune_vocab", "bit_budget")
"""The parameters ``check_setting`` can refuse; every other one applies to any model."""


def is_noop(name: str, value: object) -> bool:
    """Whether ``name=value`` leaves the model as it is (nothing to check)."""
    if name == "quant_bits":
        return value == 32
    if name in _PRUNE_PARAMS:
        return float(value) <= 0.0  # type: ignore[arg-type]
    if name == "embed_bits":
        return value == 32
    if name == "prune_vocab":
        return value is False
    if name == "bit_budget":
        return float(value) <= 0.0  # type: ignore[arg-type]
    return True


def check_setting(task: Task, name: str, value: object) -> str | None:
    """Why ``name=value`` should not be searched on ``task``'s teacher, or None if it applies.

    The answer is one line naming the setting, what was measured, and what to do. Works
    on a copy: the task's teacher is not changed. Costs one prune or quantize of the
    teacher (seconds for small models).
    """
    if name not in CHECKED or is_noop(name, value):
        return None
    if name == "bit_budget":
        return _check_budget(task, float(value))  # type: ignore[arg-type]
    config = CompressionConfig(**{name: value})
    from objectives._trial import pruned_copy, skeleton

    try:
        if name == "quant_bits":
            model = skeleton(task, config)
        else:
            model = pruned_copy(task, config)
    except TaskError as exc:
        return str(exc)
    if name == "quant_bits":
        cov = quantization_coverage(model, int(value))  # type: ignore[arg-type]
        if cov.fraction < MIN_QUANT_COVERAGE:
            return (
                f"quant_bits={value} would store only {cov.fraction:.0%} of "
                f"{type(task.teacher).__name__}'s weights at {value} bits "
                f"({', '.join(cov.uncovered)} stay above"
                + ("; int4 covers Linear layers only, the others fall back to int8"
                   if value == 4 else "")
                + f"); remove {value} from quant_bits"
            )
        return None
    if name in _PRUNE_PARAMS:
        ratio = float(value)  # type: ignore[arg-type]
        # Weights the pruning operators act on: matrices and kernels, not embedding
        # tables (a vocabulary-heavy BERT would otherwise hide any head pruning).
        if name == "attn_prune_ratio":  # judged on the attention weights it acts on
            before, after = _attention_elements(task.teacher), _attention_elements(model)
        else:
            before = quantization_coverage(task.teacher, 32).weight_elements
            after = quantization_coverage(model, 32).weight_elements
        removed = 1.0 - after / before if before else 0.0
        if removed < MIN_PRUNE_EFFECT * ratio:
            scope = "attention weights" if name == "attn_prune_ratio" else "weights"
            # Compare layer by layer with the teacher as the trial sees it (Conv1D → Linear).
            whole = _unchanged_layer_types(linearize_conv1d(copy.deepcopy(task.teacher)), model)
            return (
                f"{name}={ratio:g} removes only {removed:.1%} of "
                f"{type(task.teacher).__name__}'s {scope}"
                + (f" (left whole: {', '.join(whole)})" if whole else "")
                + f"; fix {name} at 0 for this model"
            )
    return None


def _check_budget(task: Task, budget: float) -> str | None:
    from objectives.operators._allocation import budget_bounds, refuse_unallocatable

    try:
        refuse_unallocatable(linearize_conv1d(copy.deepcopy(task.teacher)))
    except TaskError as exc:
        return str(exc)
    fewest, _ = budget_bounds(task.teacher)
    if budget < fewest:
        return (
            f"bit_budget={budget:g} is below the {fewest:.2f} effective bits per weight "
            f"that {type(task.teacher).__name__}'s Linear layers take at int4; search "
            f"bit_budget from {fewest:.2f} up"
        )
    return None


def _attention_elements(model: nn.Module) -> int:
    """Weight elements (matrices) inside attention blocks: modules named ``*attn*`` or
    ``*attention*`` — what head pruning can remove, whatever share of the model it is."""
    return sum(
        p.numel() for name, p in model.named_parameters()
        if p.dim() >= 2 and any("attn" in part or "attention" in part
                                for part in name.split(".")[:-1])
    )


def _weight_shapes(model: nn.Module) -> dict[str, tuple[str, tuple[tuple[int, ...], ...]]]:
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, _EMBEDDINGS):
            continue
        shapes = tuple(
            tuple(p.shape) for p in m.parameters(recurse=False) if p.dim() >= 2
        )
        if shapes:
            out[name] = (type(m).__name__, shapes)
    return out


def _unchanged_layer_types(before: nn.Module, after: nn.Module) -> list[str]:
    """Types of the weight layers whose shapes pruning did not change."""
    a, b = _weight_shapes(before), _weight_shapes(after)
    return sorted({a[k][0] for k in a if k in b and a[k] == b[k]})


def checked_parameters() -> tuple[str, ...]:
    """The parameters ``check_setting`` can refuse, in the order it checks them."""
    return CHECKED
