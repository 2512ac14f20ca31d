"""Front quality per trial and per CPU-second: our default against the alternatives.

Hypervolume is computed over (−accuracy/teacher, latency/teacher, size/teacher) of the
feasible COMPLETE trials (accuracy within the study's max drop), against the reference
point (−0.9, 1.5, 1.5): a front point must keep 90 % of the teacher's accuracy and be no
more than 1.5x slower or larger to count. Higher is better.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import optuna
from optuna._hypervolume import compute_hypervolume
from optuna.trial import TrialState

from benchmarks._report import machine, table, write_section
from objectives import Task
from search import Search

REFERENCE = np.array([-0.9, 1.5, 1.5])


def latency_share(trial: optuna.trial.FrozenTrial, baseline: Mapping[str, float]) -> float:
    """``trial``'s latency as a share of the teacher's.

    A trial that timed the teacher beside its artifact (``latency_raw_ms`` and
    ``reference_latency_ms`` recorded) is read as the ratio it measured: its latency
    objective is that ratio times its study's baseline latency, a single measurement
    whose noise would otherwise scale every point of the study's front. Any other trial
    is read against ``baseline["latency_ms"]``.
    """
    raw = trial.user_attrs.get("latency_raw_ms")
    reference = trial.user_attrs.get("reference_latency_ms")
    if raw is not None and reference is not None and float(reference) > 0:
        return float(raw) / float(reference)
    return trial.values[1] / baseline["latency_ms"]


def hypervolume(study: optuna.Study, upto: int | None = None,
                baseline: Mapping[str, float] | None = None) -> float:
    """Hypervolume of the feasible COMPLETE trials among the first ``upto`` trials,
    normalised by ``baseline`` (``accuracy``, ``latency_ms``, ``size_bytes``; default the
    study's own ``slimsearch_baseline``); latency as ``latency_share`` (trials timed
    beside the teacher read as the ratio they measured, whatever the baseline says).
    Studies compared with each other should share one (``common_baseline``)."""
    return _volume(_points(study, baseline or study.user_attrs["slimsearch_baseline"], upto))


def exclusive_hypervolume(studies: Mapping[str, optuna.Study],
                          baseline: Mapping[str, float]) -> dict[str, float]:
    """What each study alone adds to the joint front of ``studies``: the hypervolume of
    all their feasible trials together less that of the others' (0 where the others
    dominate every point it found), each read against the one ``baseline``. Two arms
    whose exclusive volumes are both positive each found part of the front the other
    missed; the hypervolumes alone do not say so."""
    points = {name: _points(study, baseline) for name, study in studies.items()}
    joint = _volume([p for pts in points.values() for p in pts])
    return {name: joint - _volume([p for other, pts in points.items() if other != name
                                   for p in pts])
            for name in points}


def _points(study: optuna.Study, base: Mapping[str, float],
            upto: int | None = None) -> list[list[float]]:
    """The normalised (−accuracy, latency share, size share) of ``study``'s feasible
    COMPLETE trials among its first ``upto``, inside the reference point."""
    trials = sorted(study.trials, key=lambda t: t.number)[:upto]
    points = [
        [-t.values[0] / base["accuracy"], latency_share(t, base),
         t.values[2] / base["size_bytes"]]
        for t in trials
        if t.state == TrialState.COMPLETE and all(v <= 0 for v in t.constraints.values())
    ]
    return [p for p in points if all(a < b for a, b in zip(p, REFERENCE))]


def _volume(points: list[list[float]]) -> float:
    return float(compute_hypervolume(np.array(points), REFERENCE)) if points else 0.0


def common_baseline(studies: list[optuna.Study]) -> dict[str, float]:
    """One normalisation for ``studies`` of the same task: their teacher's accuracy and
    file size (the same in each) and the median of their teacher latencies (which
    ``hypervolume`` applies only to trials that did not time the teacher beside them).

    Raises:
        ValueError: the studies' teachers differ in accuracy or size (not one task).
    """
    bases = [s.user_attrs["slimsearch_baseline"] for s in studies]
    for key in ("accuracy", "size_bytes"):
        if len({float(b[key]) for b in bases}) != 1:
            raise ValueError(f"studies of different teachers: {key} "
                             f"{sorted({b[key] for b in bases})}")
    return {"accuracy": float(bases[0]["accuracy"]),
            "size_bytes": float(bases[0]["size_bytes"]),
            "latency_ms": statistics.median(float(b["latency_ms"]) for b in bases)}


def cpu_seconds(study: optuna.Study, upto: int | None = None) -> float:
    """Seconds spent inside trials (the ``compute_s`` each trial recorded)."""
    trials = sorted(study.trials, key=lambda t: t.number)[:upto]
    return sum(float(t.user_attrs.get("compute_s", 0.0)) for t in trials)


SAMPLERS: dict[str, Callable[[int], dict]] = {
    # ours: today's Search defaults (TPE + constant liar, seed configs, the paired 90 %
    # lower bound as the constraint, the front re-timed alone; early stopping off)
    "slimsearch default": lambda seed: {},
    "slimsearch + early stopping": lambda seed: {"early_stopping": True},
    "random": lambda seed: {
        "sampler": optuna.samplers.RandomSampler(seed=seed), "seed_configs": False,
        "early_stopping": False,
    },
    "Optuna default (TPESampler())": lambda seed: {
        "sampler": optuna.samplers.TPESampler(seed=seed), "seed_configs": False,
        "early_stopping": False,
    },
    "NSGA-II": lambda seed: {
        "sampler": optuna.samplers.NSGAIISampler(seed=seed, population_size=20),
        "seed_configs": False, "early_stopping": False,
    },
    "GP": lambda seed: {
        "sampler": optuna.samplers.GPSampler(seed=seed), "seed_configs": False,
        "early_stopping": False,
    },
}


def run(task_factory: Callable[[], Task], task_label: str, *, n_trials: int = 90,
        seeds: tuple[int, ...] = (0, 1, 2), samplers: list[str] | None = None,
        workers: int = 2) -> None:
    task = task_factory()
    names = samplers or list(SAMPLERS)
    # The last checkpoint is always the study's end (the table's final column).
    checkpoints = sorted({n for n in (10, 30, 60, 90) if n < n_trials} | {n_trials})
    results: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'hv.db'}"
        studies: dict[int, dict[str, optuna.Study]] = {seed: {} for seed in seeds}
        for name in names:
            for seed in seeds:
                t0 = time.perf_counter()
                study_name = f"{name}-{seed}"
                Search(task, storage=url, study_name=study_name, n_trials=n_trials,
                       max_concurrent_trials=workers, seed=seed, progress=False,
                       max_accuracy_drop=0.02, **SAMPLERS[name](seed)).run()
                study = optuna.load_study(study_name=study_name, storage=url)
                studies[seed][name] = study
                results[name].append({
                    "cpu": cpu_seconds(study), "wall": time.perf_counter() - t0,
                })
                print(f"{task_label} {name} seed {seed}: hv@{n_trials}="
                      f"{hypervolume(study):.4f} (own teacher latency) "
                      f"cpu={results[name][-1]['cpu']:.0f}s", flush=True)
        # The samplers of a seed are compared under one normalisation (the teacher's
        # accuracy and size; the median of their teacher latencies for any trial that did
        # not time the teacher beside it; the others read as the ratio they measured).
        for i, seed in enumerate(seeds):
            common = common_baseline(list(studies[seed].values()))
            for name in names:
                results[name][i]["hv"] = {
                    n: hypervolume(studies[seed][name], n, baseline=common)
                    for n in checkpoints
                }
    rows = []
    for name in names:
        rs = results[name]
        row = [name]
        for n in checkpoints:
            vals = [r["hv"][n] for r in rs]
            row.append(f"{statistics.mean(vals):.4f} ± {statistics.pstdev(vals):.4f}")
        cpu = statistics.mean(r["cpu"] for r in rs)
        hv_final = statistics.mean(r["hv"][n_trials] for r in rs)
        row += [f"{cpu:.0f}", f"{1000 * hv_final / cpu:.2f}"]
        rows.append(row)
    headers = ["sampler"] + [f"HV @ {n} trials" for n in checkpoints] + [
        "CPU-s in trials", "HV per 1000 CPU-s"]
    body = "\n".join([
        f"## Front quality: hypervolume against trials ({task_label})",
        "",
        f"`python -m benchmarks --only hypervolume --task {task_label}` — {len(seeds)} seeds, "
        f"{n_trials} trials each, {workers} trials at a time, max accuracy drop 0.02. "
        f"Machine: {machine()}.",
        "",
        "Hypervolume of (−accuracy, latency, size) normalised by the teacher, reference point "
        "(−0.9, 1.5, 1.5); latency as each trial's ratio to the teacher timed beside it "
        "(`latency_share`: not scaled by its study's one baseline measurement, since "
        "2026-12-05); mean ± std over seeds. 'CPU-s in "
        "trials' sums each trial's `compute_s`.",
        "",
        table(headers, rows),
    ])
    write_section(f"hypervolume-{task_label}", body)
