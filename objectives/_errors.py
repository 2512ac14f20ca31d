from __future__ import annotations


class TaskError(ValueError):
    """A task, model or data set the pipeline cannot handle; the message says why and what to do."""


class TrialFailed(RuntimeError):
    """A trial that ran but could not produce a valid result (e.g. the loss became NaN)."""
