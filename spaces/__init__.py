"""What may be searched: parameter definitions, validation, presets and YAML round-trip.

Example:
    >>> from spaces import SearchSpace
    >>> space = SearchSpace.default().drop("grad_accum_steps")
    >>> "prune_ratio" in space.searched()
    True
"""

from __future__ import annotations

from spaces._catalog import CATALOG, PRESETS, ParamSpec
from spaces._errors import SpaceError
from spaces._space import (
    ALLOCATION_BASES,
    ALLOCATION_PARAMS,
    Choice,
    Fixed,
    FloatRange,
    Param,
    SearchSpace,
)

__all__ = [
    "ALLOCATION_BASES",
    "ALLOCATION_PARAMS",
    "CATALOG",
    "PRESETS",
    "Choice",
    "Fixed",
    "FloatRange",
    "Param",
    "ParamSpec",
    "SearchSpace",
    "SpaceError",
]
