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

from objectives import Task, check_setting, checked_parameters, rows_needed
from search._errors import SearchArgumentError
from spaces import Choice, Fixed, FloatRange, SearchSpace

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
