"""The study's whole vocabulary: objective names, the constraint, every attribute key.

A slimsearch study is a plain multi-objective Optuna study. Everything slimsearch writes
on it — study user attributes, trial user attributes, trial system attributes — is
named here and nowhere else, so a reader (``optuna-dashboard``, ``optuna best-trials``,
a notebook) and every module of ours agree on the spelling.
"""

from __future__ import annotations

# Objectives, in the order of ``Study.directions`` and ``FrozenTrial.values``.
METRICS = ("accuracy", "latency_ms", "size_bytes")
MODES = ("max", "min", "min")
DIRECTIONS = ("maximize", "minimize", "minimize")
CONSTRAINT = "accuracy_drop"  # Optuna constraint name (``Trial.set_constraint``)

# Study user attributes: what the study was created for (see ``StudyInfo``).
ATTR_VERSION = "slimsearch_version"
ATTR_TASK = "slimsearch_task"
ATTR_SPACE = "slimsearch_space"
ATTR_BASELINE = "slimsearch_baseline"
ATTR_MAX_DROP = "slimsearch_max_accuracy_drop"
ATTR_CONFIDENCE = "slimsearch_accuracy_confidence"  # the constraint's confidence (or None)
ATTR_SEED = "slimsearch_seed"
# The front re-timed alone before the search returned: {"rounds", "teacher_ms", "hardware",
# "trials": {trial number: ms}} (see ``Search(retime_rounds=)``).
ATTR_RETIMED = "slimsearch_retimed"

# Trial user attributes.
TRIAL_ERROR = "error"  # why a FAIL trial failed (one line)
TRIAL_ERROR_TYPE = "error_type"  # the exception type, or one of the kinds below
TRIAL_TRACEBACK = "traceback"  # the worker's traceback of a failed trial (tail)
TRIAL_TEST_ACCURACY = "test_accuracy"
TRIAL_STOPPED = "stopped"  # why a PRUNED trial was stopped early
TRIAL_PARTIAL = "partial_{metric}"  # a stopped trial's last measured objective
TRIAL_RETRY_OF = "retry_of"  # a re-queued trial: the number of the one it repeats
TRIAL_SEED_CONFIG = "slimsearch_seed_config"  # enqueued first: "seed" or "warm_start"

# Trial system attributes.
TRIAL_OWNER = "slimsearch_owner"  # the driver running it: see ``owner_identity``
TRIAL_FAILED_TRIAL = "failed_trial"  # as Optuna's ``RetryHeartbeatStaleTrialCallback``
TRIAL_RETRY_HISTORY = "retry_history"  # likewise

# Error types recorded by the driver rather than raised by a trial.
STALE_TRIAL = "StaleTrial"
WORKER_ERROR = "WorkerError"
MISSING_METRIC = "MissingMetric"
NON_FINITE_METRIC = "NonFiniteMetric"

MAX_RETRY = 1  # a stale trial's config is re-queued at most this often


def partial_key(metric: str) -> str:
    """The trial attribute holding a stopped trial's last value of ``metric``."""
    return TRIAL_PARTIAL.format(metric=metric)
