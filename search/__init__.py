"""How the study runs: Optuna study + storage, Ray Tune execution, resume, front, recipes.

Example:
    >>> from objectives.tasks import digits
    >>> from search import Search
    >>> front = Search(digits(), storage="sqlite:///study.db", n_trials=20).run()
    >>> front.best(prefer="size").size_bytes < front.baseline["size_bytes"]
    True
"""

from __future__ import annotations

from search._errors import (
    NoCandidateError,
    RecipeError,
    SearchArgumentError,
    SlimsearchError,
    StorageError,
    StudyMismatchError,
    StudyNotFoundError,
)
from search._pareto import Candidate, ParetoFront
from search._search import Search
from search._storage import open_storage, redact
from search._study import StudyInfo

__all__ = [
    "Candidate",
    "NoCandidateError",
    "ParetoFront",
    "RecipeError",
    "Search",
    "SearchArgumentError",
    "SlimsearchError",
    "StorageError",
    "StudyInfo",
    "StudyMismatchError",
    "StudyNotFoundError",
    "open_storage",
    "redact",
]
