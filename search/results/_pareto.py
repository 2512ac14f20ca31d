"""``ParetoFront``: the non-dominated accuracy / latency / size trade-offs of a study."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives import lower_bound
from search._errors import NoCandidateError
from search.study import (
    ATTR_RETIMED,
    METRICS,
    TRIAL_TEST_ACCURACY,
    StudyInfo,
    is_feasible,
    open_study,
)

Prefer = Literal["latency", "size", "accuracy"]
PREFER_CHOICES = ("latency", "size", "accuracy")


@dataclass(frozen=True)
class Candidate:
    """One Pareto-optimal trial.

    Attributes:
        trial: The Optuna trial number.
        params: The searched and fixed parameters the trial used.
        accuracy: Validation metric (ranked on).
        latency_ms: Median forward latency.
        size_bytes: Bytes of the compressed weights file.
        test_accuracy: Test metric (reported, not ranked on), if recorded.
        attrs: The trial's other recorded measurements.
    """

    trial: int
    params: Mapping[str, Any]
    accuracy: float
    latency_ms: float
    size_bytes: int
    test_accuracy: float | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_trial(cls, t: FrozenTrial, fixed: Mapping[str, Any] | None = None) -> Candidate:
        acc, lat, size = t.values
        return cls(
            trial=t.number,
            params={**(fixed or {}), **t.params},
            accuracy=float(acc),
            latency_ms=float(lat),
            size_bytes=int(size),
            test_accuracy=t.user_attrs.get(TRIAL_TEST_ACCURACY),
            attrs=dict(t.user_attrs),
        )

    @property
    def quant_coverage(self) -> float | None:
        """Share of the weights stored at the requested precision (None: not recorded)."""
        value = self.attrs.get("quant_coverage")
        return None if value is None else float(value)

    @property
    def latency_alone_ms(self) -> float | None:
        """The latency re-timed alone before the search returned (None: not re-timed);
        ``latency_ms`` is the figure measured during the search, which it ranked on."""
        value = self.attrs.get("latency_ms_alone")
        return None if value is None else float(value)

    @property
    def shown_latency_ms(self) -> float:
        """The latency to show: re-timed alone when available, else the search's."""
        alone = self.latency_alone_ms
        return self.latency_ms if alone is None else alone

    @property
    def layer_bits(self) -> dict[str, int] | None:
        """The per-layer precisions a ``bit_budget`` trial chose (None: uniform)."""
        raw = self.attrs.get("layer_bits")
        if not raw:
            return None
        return {str(k): int(v) for k, v in json.loads(raw).items()}

    @property
    def compression(self) -> dict[str, Any]:
        """The full compression settings that reproduce this candidate: its parameters
        and, for a ``bit_budget`` trial, the per-layer precisions it chose."""
        bits = self.layer_bits
        return {**self.params, **({"layer_bits": bits} if bits is not None else {})}

    @property
    def params_kept(self) -> float | None:
        """Weight elements after compression over the teacher's (None: not recorded)."""
        after, before = self.attrs.get("num_parameters"), self.attrs.get("params_before")
        if after is None or not before:
            return None
        return float(after) / float(before)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by ``slimsearch front --json``."""
        return {
            "trial": self.trial,
            "params": dict(self.params),
            "latency_ms_alone": self.latency_alone_ms,
            "layer_bits": self.layer_bits,
            "effective_bits": self.attrs.get("effective_bits"),
            "accuracy": self.accuracy,
            "latency_ms": self.latency_ms,
            "size_bytes": self.size_bytes,
            "test_accuracy": self.test_accuracy,
            "quant_coverage": self.quant_coverage,
            "num_parameters": self.attrs.get("num_parameters"),
            "params_before": self.attrs.get("params_before"),
            "accuracy_delta": self.attrs.get("accuracy_delta"),
            "accuracy_delta_se": self.attrs.get("accuracy_delta_se"),
            "confirm_accuracy": self.attrs.get("confirm_accuracy"),
            "confirm_delta": self.attrs.get("confirm_delta"),
            "confirm_delta_se": self.attrs.get("confirm_delta_se"),
        }


# Ranked on the latency shown (re-timed alone when the front was re-timed, see
# ``Candidate.shown_latency_ms``); Optuna's front membership stays the search's figures.
_KEYS = {
    "latency": lambda c: (c.shown_latency_ms, c.size_bytes, -c.accuracy, c.trial),
    "size": lambda c: (c.size_bytes, c.shown_latency_ms, -c.accuracy, c.trial),
    "accuracy": lambda c: (-c.accuracy, c.shown_latency_ms, c.size_bytes, c.trial),
}

Exclusion = Literal["validation", "lower bound", "confirmation rows"]
"""Which test keeps a front point from an export (``ParetoFront.exclusion``)."""


class ParetoFront:
    """The study's Pareto front (exactly ``optuna.Study.best_trials``) and its baseline.

    Candidates violating the study's accuracy-drop constraint are excluded, as Optuna
    excludes infeasible trials from ``best_trials``. Candidates are sorted, and
    ``best(prefer="latency")`` ranks, on ``shown_latency_ms`` (the re-timed figure when
    the front was re-timed); which trials are on the front is Optuna's call, on the
    figures the search measured.
    """

    def __init__(
        self,
        candidates: list[Candidate],
        *,
        baseline: Mapping[str, float],
        study_name: str,
        max_accuracy_drop: float | None,
        trials: list[Candidate] | None = None,
        infeasible: set[int] | None = None,
        accuracy_confidence: float | None = None,
    ) -> None:
        self.candidates = sorted(candidates, key=_KEYS["latency"])
        self.accuracy_confidence = accuracy_confidence
        self.baseline = dict(baseline)
        self.study_name = study_name
        self.max_accuracy_drop = max_accuracy_drop
        self.trials = trials or []
        self.infeasible = infeasible or set()

    @classmethod
    def from_study(cls, study: optuna.Study, info: StudyInfo) -> ParetoFront:
        """Read the front of a slimsearch study."""
        fixed = {
            k: v["value"] for k, v in info.space.items() if isinstance(v, Mapping) and "value" in v
        }
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        infeasible = {t.number for t in complete if not is_feasible(t)}
        candidates = [Candidate.from_trial(t, fixed) for t in study.best_trials]
        baseline = dict(info.baseline)
        retimed = study.user_attrs.get(ATTR_RETIMED) or {}
        alone = {int(k): float(v) for k, v in (retimed.get("trials") or {}).items()}
        if alone and all(c.trial in alone for c in candidates):
            # Figures from one session of interleaved rounds: teacher and front together.
            baseline["latency_ms_search"] = baseline["latency_ms"]
            baseline["latency_ms_alone"] = float(retimed["teacher_ms"])
            baseline["retimed_hardware"] = retimed.get("hardware")
            candidates = [replace(c, attrs={**c.attrs, "latency_ms_alone": alone[c.trial],
                                            "teacher_ms_alone": float(retimed["teacher_ms"]),
                                            "retimed_hardware": retimed.get("hardware")})
                          for c in candidates]
        return cls(
            candidates,
            baseline=baseline,
            study_name=info.name,
            max_accuracy_drop=info.max_accuracy_drop,
            trials=[Candidate.from_trial(t, fixed) for t in complete],
            infeasible=infeasible,
            accuracy_confidence=info.accuracy_confidence,
        )

    def __len__(self) -> int:
        return len(self.candidates)

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.candidates)

    def get(self, trial: int) -> Candidate:
        """The front's candidate from trial number ``trial``."""
        for c in self.candidates:
            if c.trial == trial:
                return c
        numbers = ", ".join(str(c.trial) for c in self.candidates) or "none"
        raise NoCandidateError(
            f"trial {trial} is not on the Pareto front of {self.study_name!r}; "
            f"front trials: {numbers}"
        )

    def accuracy_lower(self, candidate: Candidate) -> float:
        """``candidate``'s accuracy at the lower bound of its paired difference to the
        teacher, at the study's confidence (its accuracy when either is unknown)."""
        return lower_bound(candidate.accuracy, candidate.attrs.get("accuracy_delta_se"),
                           self.accuracy_confidence)

    def confirm_holds(self, candidate: Candidate, max_accuracy_drop: float) -> bool:
        """Whether ``candidate`` stays within ``max_accuracy_drop`` of the teacher on the
        task's confirmation rows (lower bound of the paired difference at the study's
        confidence; the point estimate without one). True when it has no such rows."""
        lower = self.confirm_lower(candidate)
        return lower is None or lower >= -max_accuracy_drop - 1e-12

    def confirm_lower(self, candidate: Candidate) -> float | None:
        """Lower bound of ``candidate``'s paired difference to the teacher on the
        confirmation rows at the study's confidence (the point estimate without one);
        None when it has no such rows."""
        delta = candidate.attrs.get("confirm_delta")
        if delta is None:
            return None
        return lower_bound(float(delta), candidate.attrs.get("confirm_delta_se"),
                           self.accuracy_confidence)

    def exclusion(self, candidate: Candidate, max_accuracy_drop: float) -> Exclusion | None:
        """Which test keeps ``candidate`` from an export at ``max_accuracy_drop``, in
        the order they are applied — ``"validation"`` (its validation accuracy drops
        more), ``"lower bound"`` (within the drop only on its point estimate, not at the
        study's ``accuracy_confidence``: ``accuracy_lower``), ``"confirmation rows"``
        (``confirm_holds`` fails) — or None when it qualifies."""
        floor = self.baseline["accuracy"] - max_accuracy_drop
        if candidate.accuracy < floor - 1e-12:
            return "validation"
        if self.accuracy_lower(candidate) < floor - 1e-12:
            return "lower bound"
        if not self.confirm_holds(candidate, max_accuracy_drop):
            return "confirmation rows"
        return None

    def best(self, prefer: Prefer = "latency", max_accuracy_drop: float | None = None) -> Candidate:
        """The candidate to export.

        Args:
            prefer: ``"latency"`` (fastest by ``shown_latency_ms``), ``"size"``
                (smallest) or ``"accuracy"`` (most accurate); ties break on the other
                objectives.
            max_accuracy_drop: Only consider candidates whose validation accuracy is at
                most this far (absolute fraction, 0.01 = 1 point) below the baseline's —
                judged, like the study's constraint, on the lower bound of the paired
                difference at the study's ``accuracy_confidence`` where the trial recorded
                its standard error (``accuracy_lower``); where the task has confirmation
                rows, the candidate must hold on them too (``confirm_holds``). None: no
                filter (``Recipe.from_front`` passes the study's stored value).

        Raises:
            ValueError: for an unknown ``prefer``.
            NoCandidateError: when no candidate qualifies; the message says which test
                excluded the front's points.
        """
        if prefer not in _KEYS:
            raise ValueError(f"prefer={prefer!r} is not allowed; use one of {PREFER_CHOICES}")
        if not self.candidates:
            raise NoCandidateError(
                f"study {self.study_name!r} has no completed feasible trial yet; "
                "run more trials"
            )
        if max_accuracy_drop is None:
            return min(self.candidates, key=_KEYS[prefer])
        excluded: dict[str, list[Candidate]] = {}
        pool = []
        for c in self.candidates:
            why = self.exclusion(c, max_accuracy_drop)
            if why is None:
                pool.append(c)
            else:
                excluded.setdefault(why, []).append(c)
        if not pool:
            raise NoCandidateError(
                f"no front point within max_accuracy_drop={max_accuracy_drop:g} of the "
                f"baseline accuracy {self.baseline['accuracy']:.4f}: "
                + "; ".join(self._excluded_reason(why, cs, max_accuracy_drop)
                            for why, cs in excluded.items())
                + ". Allow a larger drop or run more trials"
            )
        return min(pool, key=_KEYS[prefer])

    def _excluded_reason(self, why: str, cs: list[Candidate], max_accuracy_drop: float) -> str:
        """One clause of ``best``'s NoCandidateError: the trials ``why`` excluded."""
        trials = "trial" + ("s " if len(cs) > 1 else " ") + ", ".join(str(c.trial) for c in cs)
        base = self.baseline["accuracy"]
        if why == "validation":
            closest = base - max(c.accuracy for c in cs)
            return f"{trials} drop more on validation (the closest drops {closest:.4f})"
        if why == "lower bound":
            closest = base - max(self.accuracy_lower(c) for c in cs)
            conf = self.accuracy_confidence or 0.0
            return (f"{trials} within it on validation only by the point estimate, not at the "
                    f"{100 * conf:g} % lower bound (the closest bound drops {closest:.4f})")
        closest = -max(self.confirm_lower(c) for c in cs)
        return (f"{trials} within it on validation but not on the confirmation rows (the "
                f"closest bound there drops {closest:.4f})")

    def to_dict(self) -> dict[str, Any]:
        """``{"baseline": {...}, "front": [candidate, ...]}``; when the front was
        re-timed, the baseline holds ``latency_ms_alone`` (the teacher re-timed with it),
        ``latency_ms_search`` (its in-search figure, also ``latency_ms``) and
        ``retimed_hardware``."""
        base = {k: self.baseline[k] for k in METRICS}
        base["size_bytes"] = int(base["size_bytes"])
        for key in ("test_accuracy", "latency_ms_alone", "latency_ms_search",
                    "retimed_hardware"):
            if self.baseline.get(key) is not None:  # the last three: the front was re-timed
                base[key] = self.baseline[key]
        return {
            "study": self.study_name,
            "max_accuracy_drop": self.max_accuracy_drop,
            "accuracy_confidence": self.accuracy_confidence,
            "baseline": base,
            "front": [c.to_dict() for c in self.candidates],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """``to_dict()`` as JSON text."""
        return json.dumps(self.to_dict(), indent=indent)


def load_front(storage_url: str, study_name: str) -> tuple[ParetoFront, StudyInfo]:
    """Open an existing study read-only and return its front and metadata.

    Raises:
        StorageError: the storage cannot be opened (a missing SQLite file is not created).
        StudyNotFoundError: no such study.
        StudyMismatchError: the study was not created by slimsearch.
    """
    study, info = open_study(storage_url, study_name)
    return ParetoFront.from_study(study, info), info
