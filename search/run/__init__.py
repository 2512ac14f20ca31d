"""Ray Tune execution: the searcher over the study, the worker code, and the typed messages
that cross Ray between them."""

from __future__ import annotations

from search.run._messages import EarlyStoppingSpec, TrialReport
from search.run._tune import (
    measure_baseline_remote,
    ray_session,
    retime_remote,
    run_round,
    stored_profiles,
)

__all__ = [
    "EarlyStoppingSpec",
    "TrialReport",
    "measure_baseline_remote",
    "retime_remote",
    "ray_session",
    "run_round",
    "stored_profiles",
]
