"""Per-layer precision (``bit_budget``) against uniform precision, side by side.

For each task and seed, the arms' searches run one after the other on the same machine,
with the same space except for precision:

* **uniform** — ``quant_bits`` over fp32, bf16, int8, int4: what a search without
  allocation can do, with the same precisions an allocation chooses from (so the
  difference to the next arms is the allocation alone);
* **per-layer** — ``bit_budget`` over [5.5, 32] effective bits per weight, log-scaled
  (``SearchSpace.per_layer_precision``), each layer at fp32/bf16/int8/int4 by
  sensitivity, on a base (``quant_bits``) searched over fp32 and bf16 — the precision
  the rest of the model runs in, as the uniform arm's bf16 runs all of it;
* **per-layer, latency saving** — that, plus ``latency_saving`` over [0, 1]: the
  allocation also gives up sensitivity for time (the per-layer timing table measured on
  this machine), from none (0) to the fastest allocation of the budget's size (1);
* **per-layer or uniform** — that, with uniform int8 and int4 as ``quant_bits`` choices
  beside the two bases (``per_layer_precision(uniform=(8, 4))``): a trial is uniform
  int8/int4 or an allocation, so every point of the uniform arm's space is in this one
  (uniform fp32/bf16 are the budgets of 32 and 16 bits on their base) and the int8
  seeds are uniform int8 as in the uniform arm;
* **per-layer, fp32 reachable** — the latency-saving arm with the budget range up to
  ``FP32_REACHABLE_HIGH`` instead of 32: every budget from 32 up leaves the size unbound
  on the fp32 base — every layer fp32 at ``latency_saving`` 0, else what the timing table
  finds faster — so the sampler can draw uniform fp32 (with pruning) as it draws uniform
  bf16 on the bf16 base, which a range ending at 32 reaches only at its end point, with
  probability zero.

Reported: hypervolume (as ``benchmarks._hypervolume``), what each arm alone adds to a
seed's joint front (``exclusive_hypervolume``), and two equal-size readings
chosen on validation with test beside: the best validation accuracy among feasible
trials no larger than the uniform int8 reference (the uniform arm's int8 seed — no
pruning, int8 — evaluated on its own: ``_int8_reference``), and the smallest feasible
trial at least as accurate on validation as that reference, and the smallest within
``NEAR`` (half a point) below it.
"""

from __future__ import annotations

import statistics
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from benchmarks._hypervolume import common_baseline, exclusive_hypervolume, hypervolume
from benchmarks._report import machine, search_minutes, table, write_section
from objectives import CompressionConfig, Task, TrialResult, evaluate
from search import Search
from search._search import mixed_seed
from search._seeds import seed_configs
from spaces import SearchSpace

ARMS = ("uniform", "per-layer", "per-layer, latency saving", "per-layer or uniform",
        "per-layer, fp32 reachable")

FP32_REACHABLE_HIGH = 45.25
"""The 'fp32 reachable' arm's budget range ends here (32·√2): budgets from 32 bits up
leave the size unbound on an fp32 base — a sixth of the log range."""

SAMPLERS = ("tpe", "multivariate")
"""Samplers the arms can run with: ``tpe`` is the search's default (independent TPE with
``constant_liar``); ``multivariate`` is TPE with ``multivariate=True, group=True`` (one
joint density per group of parameters that occur together, which is how Optuna's TPE
models a conditional space such as ``bit_budget`` under ``quant_bits``), same seed."""

NEAR = 0.005
"""Accuracy (a fraction) below the int8 reference that the 'within' size reading allows."""


def _spaces(task: Task) -> dict[str, SearchSpace]:
    base = SearchSpace.preset(task.space_preset)
    if "edge_bits" in base:
        base = base.drop("edge_bits")
    return {
        "uniform": base.narrow("quant_bits", choices=[32, 16, 8, 4]),
        "per-layer": base.per_layer_precision(5.5, 32.0, bases=(32, 16)),
        "per-layer, latency saving": base.per_layer_precision(5.5, 32.0, saving=(0.0, 1.0),
                                                              bases=(32, 16)),
        "per-layer or uniform": base.per_layer_precision(5.5, 32.0, saving=(0.0, 1.0),
                                                         bases=(32, 16), uniform=(8, 4)),
        "per-layer, fp32 reachable": base.per_layer_precision(
            5.5, FP32_REACHABLE_HIGH, saving=(0.0, 1.0), bases=(32, 16)),
    }


def _int8_reference(task: Task, space: SearchSpace) -> TrialResult:
    """The uniform arm's int8 seed — the teacher stored uniformly int8, no pruning, with
    the settings a search seeds it with (``space``'s fixed values, the rest as
    ``seed_configs`` fills them) — evaluated here: every equal-size reading compares
    with it. Not read from the uniform study, whose search leaves that seed out on
    hardware where int8 runs slower than fp32. The seeds are not public API; they are read
    from the function the search enqueues them with (``search._seeds``), so the
    reference is exactly that seed."""
    def plain(config: dict) -> bool:
        return (config.get("quant_bits") == 8 and config.get("embed_bits", 32) == 32
                and not config.get("prune_vocab", False)
                and not any(k.endswith("prune_ratio") and v for k, v in config.items()))

    seed = next(c for c in seed_configs(space) if plain(c))
    return evaluate(task, CompressionConfig(**{**space.fixed_values(), **seed}), seed=0)


def _feasible(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state == TrialState.COMPLETE
            and all(v <= 0 for v in t.constraints.values())]


def readings(study: optuna.Study, int8_size: float, int8_accuracy: float) -> dict:
    """The equal-size readings of one study against the int8 reference (``run``'s table):
    validation accuracy and test of the most accurate feasible trial no larger than
    ``int8_size``; size and test of the smallest feasible trial at least as accurate as
    ``int8_accuracy``, and of the smallest within ``NEAR`` of it. None where no trial
    qualifies."""
    ok = _feasible(study)
    small = [t for t in ok if t.values[2] <= int8_size]
    best = max(small, key=lambda t: t.values[0], default=None)
    tiny = min((t for t in ok if t.values[0] >= int8_accuracy),
               key=lambda t: t.values[2], default=None)
    close = min((t for t in ok if t.values[0] >= int8_accuracy - NEAR),
                key=lambda t: t.values[2], default=None)

    def test(t: optuna.trial.FrozenTrial | None) -> float | None:
        return None if t is None else t.user_attrs.get("test_accuracy")

    return {
        "acc_at_int8_size": None if best is None else best.values[0],
        "test_at_int8_size": test(best),
        "size_at_int8_acc": None if tiny is None else tiny.values[2],
        "test_at_int8_acc": test(tiny),
        "size_near_int8_acc": None if close is None else close.values[2],
        "test_near_int8_acc": test(close),
    }


def _sampler(name: str, seed: int) -> optuna.samplers.BaseSampler | None:
    """The sampler ``name`` (one of ``SAMPLERS``) seeded as the search seeds its default
    for a new study; ``None`` (the search's own default) for ``tpe``."""
    if name == "tpe":
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=mixed_seed(seed, 0), constant_liar=True,
                                          multivariate=True, group=True)


def variant(sampler: str, workers: int) -> tuple[str, str]:
    """``(suffix, title tail)`` of a run with ``sampler`` and ``workers``: both empty for
    the default (``tpe``, 2 workers). The suffix ends study names and the section key,
    so a run with another sampler or number of workers sits beside the default run's
    studies and section instead of replacing them."""
    suffix = ("" if sampler == "tpe" else f"-{sampler}") + (
        "" if workers == 2 else f"-w{workers}")
    tail = ("" if sampler == "tpe" else f", {sampler} TPE") + (
        "" if workers == 2 else f", {workers} trial{'s' if workers > 1 else ''} at a time")
    return suffix, tail


def run(task_factory: Callable[[], Task], task_label: str, *, n_trials: int = 30,
        seeds: tuple[int, ...] = (0, 1, 2), workers: int = 2, drop: float = 0.02,
        storage: str | None = None, arms: tuple[str, ...] = ARMS,
        sampler: str = "tpe") -> None:
    """Run (or, with ``storage`` holding some of them already, finish) the searches of
    ``arms`` (some of ``ARMS``, at least one uniform and one per-layer; all by default)
    for every seed, with ``sampler`` (one of ``SAMPLERS``) and ``workers`` trials at a
    time, then write the section (one per task, sampler and number of workers: runs
    with a non-default sampler or workers are studies and a section of their own).
    Finished studies are not run again.

    Raises:
        ValueError: an unknown arm or sampler, no uniform or no per-layer arm to
            compare, or fewer than one worker.
    """
    if sampler not in SAMPLERS or workers < 1:
        raise ValueError(f"sampler {sampler!r}, workers {workers}: choose a sampler among "
                         f"{list(SAMPLERS)} and at least one worker")
    unknown = [a for a in arms if a not in ARMS]
    if unknown or not any(a.startswith("uniform") for a in arms) or not any(
            a.startswith("per-layer") for a in arms):
        raise ValueError(f"arms {list(arms)}: choose at least one uniform and one per-layer "
                         f"arm among {list(ARMS)}")
    arms = tuple(a for a in ARMS if a in arms)
    suffix, tail = variant(sampler, workers)
    task = task_factory()
    spaces = _spaces(task)
    int8 = _int8_reference(task, spaces["uniform"])
    int8_size, a8 = int8.size_bytes, int8.accuracy
    results: dict[str, list[dict]] = {a: [] for a in arms}
    minutes = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        url = storage or f"sqlite:///{Path(tmp) / 'mixed.db'}"
        for seed in seeds:
            studies = {}
            for arm in arms:
                name = f"{arm}-{seed}{suffix}"
                Search(task, spaces[arm], storage=url, study_name=name, n_trials=n_trials,
                       max_concurrent_trials=workers, seed=seed, progress=False,
                       max_accuracy_drop=drop, sampler=_sampler(sampler, seed)).run()
                studies[arm] = optuna.load_study(study_name=name, storage=url)
                minutes += search_minutes(studies[arm])
            common = common_baseline(list(studies.values()))
            only = exclusive_hypervolume(studies, common)
            for arm, study in studies.items():
                results[arm].append({"hv": hypervolume(study, baseline=common),
                                     "only": only[arm],
                                     **readings(study, int8_size, a8)})
                r = results[arm][-1]
                print(f"{task_label} {arm} seed {seed}: hv={r['hv']:.4f} "
                      f"acc@int8size={r['acc_at_int8_size']} size@int8acc={r['size_at_int8_acc']}",
                      flush=True)
    def mean(vals: list[float | None], fmt: str) -> str:
        got = [v for v in vals if v is not None]
        if not got:
            return "—"
        tail = f" ({len(got)}/{len(vals)} seeds)" if len(got) < len(vals) else ""
        return f"{statistics.mean(got):{fmt}}" + tail

    rows = []
    for arm in arms:
        rs = results[arm]
        hvs = [r["hv"] for r in rs]
        rows.append([
            arm,
            f"{statistics.mean(hvs):.4f} ± {statistics.pstdev(hvs):.4f}",
            mean([r["acc_at_int8_size"] for r in rs], ".4f"),
            mean([r["test_at_int8_size"] for r in rs], ".4f"),
            mean([None if r["size_at_int8_acc"] is None else r["size_at_int8_acc"] / 1024
                  for r in rs], ".1f"),
            mean([r["test_at_int8_acc"] for r in rs], ".4f"),
            mean([None if r["size_near_int8_acc"] is None else r["size_near_int8_acc"] / 1024
                  for r in rs], ".1f"),
            mean([r["test_near_int8_acc"] for r in rs], ".4f"),
        ])
    wins = []
    for per in (a for a in arms if a.startswith("per-layer")):
        for uni in (a for a in arms if a.startswith("uniform")):
            k = sum(p["hv"] > u["hv"] for p, u in zip(results[per], results[uni], strict=True))
            wins.append(f"{per} higher than {uni} in {k} of {len(seeds)} seeds")
    per_seed = "; ".join(
        f"seed {seed}: " + ", ".join(f"{arm} {results[arm][i]['hv']:.4f}" for arm in arms)
        for i, seed in enumerate(seeds))
    alone = "; ".join(
        f"seed {seed}: " + ", ".join(f"{arm} {results[arm][i]['only']:.4f}" for arm in arms)
        for i, seed in enumerate(seeds))
    alone_means = ", ".join(
        f"{arm} {statistics.mean(r['only'] for r in results[arm]):.4f}" for arm in arms)
    first_flag = f" --first-seed {seeds[0]}" if seeds[0] else ""
    arms_flag = "" if arms == ARMS else " --arms " + " ".join(f"'{a}'" for a in arms)
    label = task_label + tail
    flags = (f" --sampler {sampler}" if sampler != "tpe" else "") + (
        f" --workers {workers}" if workers != 2 else "")
    body = "\n".join([
        f"## Per-layer precision against uniform precision ({label})",
        "",
        f"`python -m benchmarks --only mixed --task {task_label} --trials {n_trials} "
        f"--seeds {len(seeds)}{first_flag}{arms_flag}{flags}` — {len(seeds)} "
        f"seed{'s' if len(seeds) > 1 else ''} "
        f"({', '.join(map(str, seeds))}) × {n_trials} trials per arm, "
        f"{workers} trial{'s' if workers > 1 else ''} at a time, "
        f"max accuracy drop {drop} (90 % lower bound), the "
        f"arms of a seed run one after the other. Searches took {minutes:.0f} min in "
        f"all. "
        f"Machine: {machine()}.",
        "",
        "Arms: *uniform* searches `quant_bits` over fp32/bf16/int8/int4; *per-layer* "
        "searches `bit_budget` in [5.5, 32] effective bits (log scale), each Linear at "
        "fp32/bf16/int8/int4 by measured sensitivity (bf16 a layer's precision since "
        "95481e7), on a base `quant_bits` searched over fp32 and bf16 (the rest of the "
        "model in bf16, each Linear at bf16/int8/int4, int8/int4 layers in fp32 islands, "
        "since dd89607); "
        "*per-layer, latency saving* also searches `latency_saving` in [0, 1] (the share "
        "of the time the allocation could save at that size, by the per-layer timing "
        "table, that it must save); *per-layer or uniform* is that with uniform int8 "
        "and int4 as `quant_bits` choices beside the bases (a trial is uniform int8/int4, "
        "drawing no budget, or an allocation: `per_layer_precision(uniform=(8, 4))`); "
        f"*per-layer, fp32 reachable* is the latency-saving arm with `bit_budget` in "
        f"[5.5, {FP32_REACHABLE_HIGH:g}] (from 32 bits up the size is unbound on the fp32 "
        "base: every layer fp32 at `latency_saving` 0; a sixth of the log range). All other "
        "parameters as the task's preset. Hypervolume as in the hypervolume section "
        "(reference (−0.9, 1.5, 1.5) of the teacher), latency as each trial's ratio to "
        "the teacher timed beside it (`latency_share`; until 2026-12-05 a trial's latency "
        "objective — that ratio times its study's one teacher measurement — was divided "
        "by the median of the arms' teacher measurements, which scaled a whole front by "
        "its study's measurement noise). "
        "'int8 reference': the uniform arm's int8 seed (no pruning, every layer int8, "
        "seeded settings), evaluated on its own since a search leaves it out where int8 "
        f"is slower than fp32 ({int8_size / 1024:.1f} KiB, validation {a8:.4f}, "
        f"test {int8.test_accuracy:.4f}); 'at int8 size': the best validation accuracy "
        "among feasible trials no larger than it, test beside it; 'at int8 accuracy': the "
        "smallest feasible trial at least as accurate on validation as it; 'within "
        f"{100 * NEAR:g} pt': the smallest feasible trial at most {100 * NEAR:g} point "
        "below it on validation (where the reference ties the teacher, exactly its "
        "accuracy is a matter of which trials land on it).",
        "",
        table(["arm", "hypervolume", "val acc at int8 size", "test", "KiB at int8 acc",
               "test", f"KiB within {100 * NEAR:g} pt of int8 acc", "test"], rows),
        "",
        "Hypervolume, seed by seed: " + "; ".join(wins) + " (" + per_seed + ").",
        "",
        "What each arm alone adds to a seed's joint front (the hypervolume of every "
        "arm's feasible trials together, less that of the other arms'; 0 where the "
        f"others dominate all it found): on the mean {alone_means} ({alone}).",
    ])
    write_section(f"mixed-{task_label}{suffix}", body)
