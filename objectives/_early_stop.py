"""Early stopping that works in a multi-objective search.

Latency and size of a trial's final artifact depend on its structure and precision,
not on the values of its weights, so they are measured *before* fine-tuning. During
the fine-tune the validation metric is checked after every epoch, and the trial stops
when it

* cannot meet the accuracy-drop constraint: even gaining twice the best per-epoch gain
  seen so far (at least ``min_gain_per_epoch``) in every remaining epoch would leave it
  below ``baseline − max_accuracy_drop``; or
* is already beaten: a finished feasible trial is at least as fast and as small and has
  an accuracy this trial cannot reach by the same optimistic bound.

Stopped trials are recorded as PRUNED with the reason; they never enter the front.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FinishedTrial:
    """Objectives of a finished feasible trial."""

    accuracy: float
    latency_ms: float
    size_bytes: int


@dataclass(frozen=True)
class EarlyStopping:
    """The stopping rule (see the module docstring).

    Attributes:
        baseline_accuracy: The teacher's validation metric.
        max_accuracy_drop: The study's constraint, or None.
        finished: Finished feasible trials to compare against.
        min_epochs: Never stop before this many epochs have run.
        min_gain_per_epoch: Optimism floor for the remaining epochs' gain.
        optimism: Factor on the best per-epoch gain seen so far.
    """

    baseline_accuracy: float
    max_accuracy_drop: float | None
    finished: Sequence[FinishedTrial] = field(default_factory=tuple)
    min_epochs: int = 2
    min_gain_per_epoch: float = 0.01
    optimism: float = 2.0

    def reachable(self, accuracies: Sequence[float], total_epochs: int) -> float:
        """Optimistic bound on the accuracy this trial can end with."""
        best = max(accuracies)
        gains = [b - a for a, b in zip(accuracies, accuracies[1:])]
        per_epoch = max(self.min_gain_per_epoch, self.optimism * max(gains, default=0.0))
        remaining = max(total_epochs - len(accuracies), 0)
        return best + per_epoch * remaining

    def reason(
        self,
        accuracies: Sequence[float],
        total_epochs: int,
        latency_ms: float | None,
        size_bytes: int | None,
    ) -> str | None:
        """Why to stop after the epochs whose accuracies are given, or None to go on."""
        if len(accuracies) < self.min_epochs or len(accuracies) >= total_epochs:
            return None
        bound = self.reachable(accuracies, total_epochs)
        if self.max_accuracy_drop is not None:
            floor = self.baseline_accuracy - self.max_accuracy_drop
            if bound < floor:
                return (
                    f"cannot meet the accuracy floor {floor:.4f}: at most {bound:.4f} "
                    f"reachable after epoch {len(accuracies)}/{total_epochs}"
                )
        if latency_ms is not None and size_bytes is not None:
            for f in self.finished:
                if f.latency_ms <= latency_ms and f.size_bytes <= size_bytes and f.accuracy > bound:
                    return (
                        f"dominated: a finished trial is as fast ({f.latency_ms:.3g} ms), as small "
                        f"({f.size_bytes} B) and more accurate ({f.accuracy:.4f} > {bound:.4f})"
                    )
        return None
