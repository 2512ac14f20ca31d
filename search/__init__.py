"""How the study runs: Optuna study + storage, Ray Tune execution, resume, front, recipes.

The public names below are the whole API; behind them ``search`` is laid out by job
(docs/architecture.md): ``study/`` (the study in the database), ``run/`` (Ray Tune
execution), ``results/`` (front, recipes, status), ``view/`` (what a person sees), and
``Search``, the command line and seeding on top.

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
from search._search import Search
from search.results import AppliedRecipe, Candidate, ParetoFront, Recipe, load_front
from search.study import StudyInfo, open_storage, redact
from search.view import Progress, plot_front, write_report

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
    "plot_front",
    "redact",
    "write_report",
]
