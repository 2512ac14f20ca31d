"""Before the first trial: refuse operator settings that would do nothing to the model.

Every searched or fixed value of an operator parameter is applied once to a copy of the
teacher (``objectives.check_setting``). A value that cannot apply, or would barely
change the model (int8 that leaves the convolutions fp32, a pruning ratio that only
shrinks the head), is

* an error when the user chose the space — one line naming the setting, what it would
  leave untouched, and what to do — raised before anything is written to the study;
* dropped from the space, with one warning line, when the space is the task's default
  preset (a float range is then fixed at 0, a choice loses the value).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from objectives import (
    LayerProfile,
    Task,
    TaskError,
    check_setting,
    checked_parameters,
    fastest_allocation,
    rows_needed,
)
from search._errors import SearchArgumentError
from spaces import Choice, Fixed, FloatRange, SearchSpace

if TYPE_CHECKING:
    from torch import nn

logger = logging.getLogger(__name__)

_PROBE_RATIO = 0.5


def _probe_values(name: str, param: FloatRange | Choice | Fixed) -> list[object]:
    """The values of one parameter that stand for all of them in the check."""
    if isinstance(param, Fixed):
        return [param.value]
    if isinstance(param, Choice):
        return list(param.choices)
    if name == "bit_budget":  # the smallest budget is the one that may not fit
        return [param.low]
    if param.high <= 0.0:
        return []
    # A range is probed at a representative ratio (its most aggressive end if narrower).
    return [_PROBE_RATIO if param.low <= _PROBE_RATIO <= param.high else param.high]


def preflight(task: Task, space: SearchSpace, *, user_space: bool) -> SearchSpace:
    """Check ``space``'s operator values against ``task``'s teacher; return what to search.

    Args:
        task: Whose teacher the operators must apply to.
        space: The space a new study would search.
        user_space: Whether the user chose ``space`` (refusals are errors) or it is the
            default preset (refused values are dropped with a warning).

    Raises:
        SearchArgumentError: ``user_space`` and a value does not apply; the message is
            one line per refused setting, joined by "; ".
    """
    refusals: list[tuple[str, object, str]] = []
    for name in checked_parameters():
        param = space.parameters.get(name)
        if param is None:
            continue
        for value in _probe_values(name, param):
            reason = check_setting(task, name, value)
            if reason is not None:
                refusals.append((name, value, reason))
    if not refusals:
        return space
    if user_space:
        raise SearchArgumentError(
            f"the search space does not fit task {task.name!r}: "
            + "; ".join(reason for _, _, reason in refusals)
        )
    for name, value, reason in refusals:
        space = _without(space, name, value)
        logger.warning("not searching %s=%s on task %r: %s", name, value, task.name, reason)
    return space


def _without(space: SearchSpace, name: str, value: object) -> SearchSpace:
    """``space`` with ``name=value`` removed: the operator's no-op when nothing is left."""
    param = space.parameters[name]
    if isinstance(param, Choice):
        left = [c for c in param.choices if c != value]
        if len(left) > 1:
            return space.narrow(name, choices=left)
        if len(left) == 1:
            return space.fix(name, left[0])
    return space.drop(name)


ASSUMED_DISAGREEMENT = 0.1
"""Share of validation rows on which a student and its teacher are assumed to disagree
when sizing the split (``split_size_warning``)."""


def split_size_warning(task: Task, max_drop: float | None, confidence: float) -> str | None:
    """One line when ``task.val`` is too small to show "within ``max_drop``" at
    ``confidence``, saying how many rows would be needed; None when it is large enough.

    Sized for a student exactly as accurate as its teacher that disagrees with it on
    ``ASSUMED_DISAGREEMENT`` of the rows (``objectives.rows_needed``).
    Classifier tasks only: a language model's rows hold many counted tokens each.
    """
    if max_drop is None or max_drop <= 0 or task.val.token_level:
        return None
    needed = rows_needed(max_drop, confidence, ASSUMED_DISAGREEMENT)
    rows = len(task.val)
    if rows >= needed:
        return None
    return (
        f"validation has {rows} rows: showing a student within {100 * max_drop:g} points of "
        f"the teacher at {100 * confidence:g} % confidence takes about {needed} rows when they "
        f"disagree on {100 * ASSUMED_DISAGREEMENT:g} % of them; expect points marked "
        "uncertain — give more validation rows (and a confirmation split) or allow a larger "
        "max_accuracy_drop"
    )


FAST_CORNER_SHARE = 0.15
"""Below this share of ``bit_budget``'s range reaching the fastest allocation,
``fast_corner_warning`` speaks, and suggests the ``high`` that gives it a sixth
(``SearchSpace.per_layer_precision(high=45.25)`` gives every budget from 32 bits up a
sixth of the log range from 5.5; a uniform search reaches each of its four precisions
with a quarter of its draws)."""

_NAMES = {32: "fp32", 16: "bf16", 8: "int8", 4: "int4"}


def fast_corner_warning(
    teacher: nn.Module, space: SearchSpace, profile: LayerProfile | Mapping[str, Any]
) -> str | None:
    """One line when the fastest allocation of ``teacher`` on this hardware
    (``objectives.fastest_allocation`` by ``profile``, the fp32-base layer profile the
    search measured) needs so many bits that less than ``FAST_CORNER_SHARE`` of
    ``space``'s ``bit_budget`` range reaches it, naming the ``high`` that would give it
    a sixth; None otherwise.

    On CPUs where fp32 is the fastest precision of most layers, the fastest allocation
    is every layer (or nearly every layer) fp32 — the fast corner a uniform search
    reaches with ``quant_bits`` 32 and pruning — and a range that ends at 32 reaches it
    only at its very top. Spaces that search ``bit_budget`` with a time parameter
    (``latency_saving`` or ``latency_budget``) on an fp32 base only: without one the
    allocation does not aim for speed.
    """
    params = space.parameters
    budget = params.get("bit_budget")
    if not isinstance(budget, FloatRange) or budget.low <= 0:
        return None
    timed = [params[n] for n in ("latency_saving", "latency_budget") if n in params]
    if not timed or all(isinstance(p, Fixed) and not p.value for p in timed):
        return None
    bits = params.get("quant_bits")
    bases = (bits.choices if isinstance(bits, Choice)
             else [bits.value] if isinstance(bits, Fixed) else [32])
    if 32 not in bases:
        return None
    if not isinstance(profile, LayerProfile):
        try:
            profile = LayerProfile.from_dict(profile)
        except TaskError:
            return None
    if not profile.latency_ms or profile.base != 32:
        return None
    try:
        fastest = fastest_allocation(teacher, profile)
    except TaskError:  # a profile of another model: the trials will say so
        return None
    need, low, high = fastest.effective_bits, budget.low, budget.high
    if need <= low:
        return None
    if need > high:
        share = 0.0
    elif budget.log:
        share = math.log(high / need) / math.log(high / low)
    else:
        share = (high - need) / (high - low)
    if share >= FAST_CORNER_SHARE:
        return None
    k = 1 / 6
    suggest = (math.exp((math.log(need) - k * math.log(low)) / (1 - k)) if budget.log
               else (need - k * low) / (1 - k))
    suggest = min(64.0, math.ceil(suggest * 100) / 100)  # the catalog's most
    counts = Counter(fastest.layer_bits.values())
    layers = (f"every layer {_NAMES[next(iter(counts))]}" if len(counts) == 1 else
              ", ".join(f"{n} {_NAMES[b]}" for b, n in sorted(counts.items(), reverse=True)))
    return (
        f"the fastest allocation on this hardware ({layers}, by the per-layer timing "
        f"table) takes {need:.1f} effective bits per weight, and {100 * share:.0f} % of "
        f"bit_budget's range [{low:g}, {high:g}] reaches it: the sampler will rarely try "
        "the fast corner a uniform search reaches with one quant_bits value — search "
        f"bit_budget up to {suggest:g} (SearchSpace.per_layer_precision(high={suggest:g}), "
        "or its high in the space file) to give it a sixth of the range"
    )

