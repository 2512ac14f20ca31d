"""The teacher's layer profile for a task (sensitivity and in-model timing table, measured
once per task, base and machine) and each pruned student's own timing table.

Kept apart from ``_allocation`` (what a profile is, and the allocation it drives) and
``_layer_timing`` (how a table is timed), which this module builds on; neither imports
it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from objectives._errors import TaskError
from objectives.operators._allocation import (
    LAYER_BITS,
    PROFILE_VERSION,
    SENSITIVITY_ROWS,
    LayerProfile,
    allocated,
    check_base,
    measure_sensitivity,
)
from objectives.operators._conv1d import ORIGIN_ATTR, linearize_conv1d
from objectives.operators._layer_timing import measure_layer_latency, measure_switch_costs

if TYPE_CHECKING:
    from objectives._task import Task

IN_MODEL_VERSION = 6
"""The first profile version whose timing table was timed inside the model
(``measure_layer_latency``); a student of an older profile is timed again even where
pruning left its shapes alone, so a study resumed on an older stored profile allocates
every trial by in-model times."""


def student_layer_latency(
    student: nn.Module, task: Task, profile: LayerProfile, cache: str | Path | None = None
) -> dict[str, dict[int, float]] | None:
    """The per-layer timing table of ``student`` (a pruned copy of ``task``'s teacher),
    timed in the student itself on ``profile``'s base — or ``None`` where the profile has
    no timing table (nothing to replace) or pruning left every allocated layer its
    teacher shape and the profile's table was timed the same way (the profile's table is
    then that table). Timed as the profile's (``measure_layer_latency`` on the task's
    latency workload), each student structure once per machine (``cache``, default the
    task cache directory).

    Takes the measurement lock exclusively while timing: call it outside a shared hold.
    """
    from objectives._cache import cache_dir

    if not profile.latency_ms:
        return None
    # In place, as ``allocate`` treats the student next (measure_layer_latency copies it).
    work = linearize_conv1d(student)
    names = allocated(work)
    if profile.version >= IN_MODEL_VERSION and all(
            work.get_submodule(n).weight.numel()
            == profile.weights.get(getattr(work.get_submodule(n), ORIGIN_ATTR, n), -1)
            for n in names):
        return None
    return _task_layer_latency(work, task, profile.base,
                               cache if cache is not None else cache_dir())


def _task_layer_latency(
    model: nn.Module, task: Task, base: int, cache: str | Path | None
) -> dict[str, dict[int, float]]:
    """``measure_layer_latency`` of ``model`` on ``task``'s latency workload: a decode
    from its decode prompt for decode latency, else a pass over its latency inputs."""
    decode = task.latency_mode == "decode"
    return measure_layer_latency(
        model, task.decode_prompt if decode else task.latency_inputs, threads=task.threads,
        decode_tokens=task.decode_tokens if decode else 0, base=base, cache=cache,
    )


_PROFILES: dict[str, LayerProfile] = {}


def task_profile(
    task: Task, cache: str | Path | None = None, *, base: int = 32
) -> LayerProfile:
    """``measure_sensitivity`` of ``task``'s teacher on its first ``SENSITIVITY_ROWS``
    calibration rows, with the per-layer timing table (``measure_layer_latency`` on the
    task's latency workload: a pass over its latency inputs, or a decode from its decode
    prompt) and what a change of precision between neighbouring layers costs
    (``measure_switch_costs``, the same workload), all on ``base`` (``BASES``), computed
    once per task fingerprint, base and machine (in this process and on disk under
    ``cache/sensitivity``)."""
    from objectives._cache import cache_dir
    from objectives._task import take
    from objectives.measure._hardware import describe_hardware

    key = hashlib.sha256(f"{task.fingerprint}|{SENSITIVITY_ROWS}|{LAYER_BITS}|"
                         f"{PROFILE_VERSION}|{torch.__version__}|"
                         f"{describe_hardware('cpu', task.threads)}|"
                         f"base{check_base(base)}".encode()).hexdigest()[:20]
    if key in _PROFILES:
        return _PROFILES[key]
    file = (Path(cache) if cache is not None else cache_dir()) / "sensitivity" / f"{key}.json"
    profile = None
    if file.is_file():
        try:
            profile = LayerProfile.from_dict(json.loads(file.read_text(encoding="utf-8")))
        except (OSError, ValueError, TaskError):
            profile = None  # a damaged cache entry is measured again
        if profile is not None and profile.base != base:
            profile = None
    if profile is None:
        rows = min(SENSITIVITY_ROWS, len(task.train))
        calibration = take(task.calibration_inputs, slice(0, rows))
        previous = torch.get_num_threads()
        torch.set_num_threads(task.threads)
        try:
            profile = measure_sensitivity(task.teacher, calibration, base=base)
            latency = _task_layer_latency(task.teacher, task, base, None)
            decode = task.latency_mode == "decode"
            order, switch_ms = measure_switch_costs(
                task.teacher, task.decode_prompt if decode else task.latency_inputs,
                latency, threads=task.threads,
                decode_tokens=task.decode_tokens if decode else 0, base=base)
        finally:
            torch.set_num_threads(previous)

        profile = LayerProfile(
            weights=profile.weights, sensitivity=profile.sensitivity, rows=profile.rows,
            latency_ms=latency, hardware=describe_hardware("cpu", task.threads), base=base,
            order=order, switch_ms=switch_ms,
        )
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_suffix(".tmp")
        tmp.write_text(json.dumps(profile.to_dict()), encoding="utf-8")
        tmp.replace(file)
    _PROFILES[key] = profile
    return profile
