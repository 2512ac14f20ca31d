"""How a pruning ratio becomes a number of removed units (decoder layers, attention heads).

``removed_units(ratio, count)`` is ``ceil(ratio · count)`` — at least one for every
positive ratio, at most ``count − 1`` (one unit always stays). Ceiling, not rounding:
Python's ``round`` goes half to even (``round(0.5) == 0``), so rounding made small
positive ratios (and some exact halves) remove nothing while the trial recorded them as
pruned. With the ceiling a positive ratio is never a no-op, and the count is monotone in
the ratio: ratios in ``((k − 1) / count, k / count]`` all remove ``k`` units. A product
within ``1e-9`` of an integer counts as that integer, so float error (``0.3 · 10``) does
not add a unit. A positive ratio on a single unit cannot remove anything and is refused.
"""

from __future__ import annotations

import math

from objectives._errors import TaskError


def removed_units(ratio: float, count: int, *, setting: str, unit: str) -> int:
    """Units of ``count`` that ``setting=ratio`` removes (see the module docstring).

    Raises:
        TaskError: ``ratio > 0`` and ``count == 1``: nothing can be removed.
    """
    if ratio <= 0.0:
        return 0
    removed = min(max(1, math.ceil(ratio * count - 1e-9)), count - 1)
    if removed < 1:
        raise TaskError(
            f"{setting}={ratio:g} cannot remove any of {count} {unit} (at least one must "
            f"stay); fix {setting} at 0 for this model"
        )
    return removed
