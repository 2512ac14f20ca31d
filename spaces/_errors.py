from __future__ import annotations


class SpaceError(ValueError):
    """An invalid search space: the message names the field and what is allowed."""
