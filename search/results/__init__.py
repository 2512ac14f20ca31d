"""What a study yields: its Pareto front, exportable recipes, and its status."""

from __future__ import annotations

from search.results._pareto import PREFER_CHOICES, Candidate, ParetoFront, Prefer, load_front
from search.results._recipe import (
    ACCURACY_TOLERANCE,
    RECIPE_FILE,
    AppliedRecipe,
    Recipe,
    library_versions,
)
from search.results._status import Failure, StudyStatus, status_of, study_status

__all__ = [
    "ACCURACY_TOLERANCE",
    "PREFER_CHOICES",
    "RECIPE_FILE",
    "AppliedRecipe",
    "Candidate",
    "Failure",
    "ParetoFront",
    "Prefer",
    "Recipe",
    "StudyStatus",
    "library_versions",
    "load_front",
    "status_of",
    "study_status",
]
