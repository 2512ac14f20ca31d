"""What a study was created for (``StudyInfo``), and creating, joining and loading it.

A slimsearch study is a plain multi-objective Optuna study — maximize ``accuracy``,
minimize ``latency_ms``, minimize ``size_bytes`` — whose user attributes record what it
was created for. ``optuna.load_study(...).best_trials`` is the Pareto front, with trials
that break the accuracy-drop constraint excluded through Optuna's constraint records.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna

from search._errors import (
    NOT_OUR_STUDY,
    STUDY_NOT_FOUND,
    StudyMismatchError,
    StudyNotFoundError,
)
from search.study._keys import (
    ATTR_BASELINE,
    ATTR_CONFIDENCE,
    ATTR_MAX_DROP,
    ATTR_SEED,
    ATTR_SPACE,
    ATTR_TASK,
    ATTR_VERSION,
    DIRECTIONS,
    METRICS,
)
from search.study._storage import open_storage, redact

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

@dataclass(frozen=True)
class StudyInfo:
    """What a slimsearch study was created for.

    Attributes:
        name: The Optuna study name.
        task: ``{"name", "fingerprint", "spec"}`` of the task.
        space: The search space in its mapping form.
        baseline: The teacher's metrics, measured like a trial.
        max_accuracy_drop: The constraint (absolute accuracy points as a fraction), or None.
        seed: The training seed every trial used.
        accuracy_confidence: The constraint is judged on the lower bound of the paired
            accuracy difference at this confidence (``objectives.measure._paired``); None
            for studies created before it existed (judged on the point estimate).
    """

    name: str
    task: Mapping[str, Any]
    space: Mapping[str, Any]
    baseline: Mapping[str, float]
    max_accuracy_drop: float | None
    seed: int
    accuracy_confidence: float | None = None

    @classmethod
    def from_study(cls, study: optuna.Study, storage_url: str) -> StudyInfo:
        attrs = study.user_attrs
        if ATTR_VERSION not in attrs:
            raise StudyMismatchError(
                NOT_OUR_STUDY.format(name=study.study_name, storage=redact(storage_url))
            )
        return cls(
            name=study.study_name,
            task=attrs[ATTR_TASK],
            space=attrs[ATTR_SPACE],
            baseline=attrs[ATTR_BASELINE],
            max_accuracy_drop=attrs.get(ATTR_MAX_DROP),
            seed=int(attrs.get(ATTR_SEED, 0)),
            accuracy_confidence=attrs.get(ATTR_CONFIDENCE),
        )


def study_names(storage: BaseStorage) -> list[str]:
    """Names of every study in ``storage``."""
    return [s.study_name for s in storage.get_all_studies()]


def find_study(storage: BaseStorage, name: str) -> optuna.Study | None:
    """The study ``name`` in ``storage``, or None."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return None


def load_existing(storage: BaseStorage, name: str, storage_url: str) -> optuna.Study:
    """Load ``name`` from ``storage``; a missing study is a clear error."""
    study = find_study(storage, name)
    if study is None:
        existing = ", ".join(repr(n) for n in study_names(storage)) or "none"
        raise StudyNotFoundError(
            STUDY_NOT_FOUND.format(name=name, storage=redact(storage_url), existing=existing)
        )
    return study


def create_or_join(
    storage: BaseStorage,
    name: str,
    *,
    task: Mapping[str, Any],
    space: Mapping[str, Any],
    baseline: Mapping[str, float],
    max_accuracy_drop: float | None,
    seed: int,
    version: str,
    accuracy_confidence: float | None = None,
    wait_s: float = 10.0,
) -> tuple[optuna.Study, bool]:
    """Create the study with its metadata, or join the one another process creates.

    Of several processes creating the same study at once exactly one wins (the
    database's unique study name decides) and writes the metadata — at once, the
    baseline is measured before — the version attribute last; the others wait up to
    ``wait_s`` seconds for it and join. A study without the
    version attribute after that is incomplete (a crash between creation and metadata)
    and is repaired when it has no trials.

    Returns:
        ``(study, created)``: ``created`` is True for the process that wrote the metadata
        (only it should enqueue first trials); a joining caller must check the stored
        metadata against its own task and space.
    """
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, directions=list(DIRECTIONS)
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        deadline = time.monotonic() + wait_s
        while ATTR_VERSION not in study.user_attrs and time.monotonic() < deadline:
            time.sleep(0.2)
        if ATTR_VERSION in study.user_attrs:
            return study, False
    if study.get_trials(deepcopy=False):
        raise StudyMismatchError(
            f"study {name!r} has trials but no slimsearch metadata; use another study name"
        )
    with warnings.catch_warnings():  # named objectives in Optuna's CLI and dashboard
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(METRICS))
    study.set_user_attr(ATTR_TASK, dict(task))
    study.set_user_attr(ATTR_SPACE, dict(space))
    study.set_user_attr(ATTR_BASELINE, dict(baseline))
    study.set_user_attr(ATTR_MAX_DROP, max_accuracy_drop)
    study.set_user_attr(ATTR_CONFIDENCE, accuracy_confidence)
    study.set_user_attr(ATTR_SEED, seed)
    study.set_user_attr(ATTR_VERSION, version)
    return study, True


def open_study(storage_url: str, study_name: str) -> tuple[optuna.Study, StudyInfo]:
    """Open an existing slimsearch study for reading: the study and its metadata.

    The storage is opened without creating anything (a missing SQLite file is an
    error, an existing one is opened read-only and left byte for byte as it is).

    Raises:
        StorageError: the storage cannot be opened.
        StudyNotFoundError: no such study.
        StudyMismatchError: the study was not created by slimsearch.
    """
    storage = open_storage(storage_url, create=False)
    study = load_existing(storage, study_name, storage_url)
    return study, StudyInfo.from_study(study, storage_url)
