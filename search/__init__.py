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
from search._pareto import Candidate, ParetoFront, load_front
from search._progress import Progress
from search._recipe import AppliedRecipe, Recipe
from search._report import write_report
from search._search import Search
from search._storage import open_storage, redact
from search._study import StudyInfo

__all__ = [
    "AppliedRecipe",
    "Candidate",
    "NoCandidateError",
    "ParetoFront",
    "Progress",
    "Recipe",
    "RecipeError",
    "Search",
    "SearchArgumentError",
    "SlimsearchError",
    "StorageError",
    "StudyInfo",
    "StudyMismatchError",
    "StudyNotFoundError",
    "load_front",
    "open_storage",
    "redact",
    "write_report",
]
