"""Per-layer precision (``bit_budget``) against uniform precision, side by side.

For each task and seed, three searches run one after the other on the same machine, with
the same space except for precision:

* **uniform** — ``quant_bits`` over every precision the task's space allows it (fp32,
  bf16, int8, int4): what a search without allocation can do;
* **uniform, same menu** — ``quant_bits`` over fp32, int8, int4 only: the precisions an
  allocation chooses from, so the difference to the next arm is the allocation alone;
* **per-layer** — ``bit_budget`` over [5.5, 16] effective bits per weight
  (``SearchSpace.per_layer_precision``), each layer at fp32/int8/int4 by sensitivity;
* **per-layer, latency budget** — that, plus ``latency_budget`` over [0.5, 1.5]: the
  allocation also keeps the layers' time (the per-layer timing table measured on this
  machine) within that share of their fp32 time.

Reported: hypervolume (as ``benchmarks._hypervolume``), and two equal-size readings
chosen on validation with test beside: the best validation accuracy among feasible
trials no larger than the teacher stored uniformly int8 (its file, measured), and the
smallest feasible trial at least as accurate on validation as the uniform arm's own
int8 seed trial (no pruning, int8).
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.trial import TrialState

from benchmarks._hypervolume import hypervolume
from benchmarks._report import machine, search_minutes, table, write_section
from objectives import CompressionConfig, Task, save_weights, skeleton
from search import Search
from spaces import SearchSpace

ARMS = ("uniform", "uniform, same menu", "per-layer", "per-layer, latency budget")


def _spaces(task: Task) -> dict[str, SearchSpace]:
    base = SearchSpace.preset(task.space_preset)
    if "edge_bits" in base:
        base = base.drop("edge_bits")
    return {
        "uniform": base.narrow("quant_bits", choices=[32, 16, 8, 4]),
        "uniform, same menu": base.narrow("quant_bits", choices=[32, 8, 4]),
        "per-layer": base.per_layer_precision(5.5, 16.0),
        "per-layer, latency budget": base.per_layer_precision(5.5, 16.0, latency=(0.5, 1.5)),
    }


def _int8_size(task: Task) -> int:
    with tempfile.TemporaryDirectory() as d:
        return save_weights(skeleton(task, CompressionConfig(quant_bits=8)),
                            Path(d) / "m.safetensors")


def _feasible(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state == TrialState.COMPLETE
            and all(v <= 0 for v in t.constraints.values())]


def _int8_seed_accuracy(study: optuna.Study) -> float | None:
    for t in study.trials:
        if (t.state == TrialState.COMPLETE and t.params.get("quant_bits") == 8
                and float(t.params.get("prune_ratio", 0.0)) == 0.0
                and t.user_attrs.get("slimsearch_seed_config")):
            return float(t.values[0])
    return None


def run(task_factory: Callable[[], Task], task_label: str, *, n_trials: int = 30,
        seeds: tuple[int, ...] = (0, 1, 2), workers: int = 2, drop: float = 0.02,
        storage: str | None = None) -> None:
    """Run (or, with ``storage`` holding some of them already, finish) the searches of
    every arm and seed, then write the section. Finished studies are not run again."""
    task = task_factory()
    spaces = _spaces(task)
    int8_size = _int8_size(task)
    results: dict[str, list[dict]] = {a: [] for a in ARMS}
    int8_accs: list[float] = []
    minutes = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        url = storage or f"sqlite:///{Path(tmp) / 'mixed.db'}"
        for seed in seeds:
            studies = {}
            for arm in ARMS:
                name = f"{arm}-{seed}"
                Search(task, spaces[arm], storage=url, study_name=name, n_trials=n_trials,
                       max_concurrent_trials=workers, seed=seed, progress=False,
                       max_accuracy_drop=drop).run()
                studies[arm] = optuna.load_study(study_name=name, storage=url)
                minutes += search_minutes(studies[arm])
            a8 = _int8_seed_accuracy(studies["uniform"])
            if a8 is not None:
                int8_accs.append(a8)
            for arm, study in studies.items():
                ok = _feasible(study)
                small = [t for t in ok if t.values[2] <= int8_size]
                best = max(small, key=lambda t: t.values[0], default=None)
                accurate = [t for t in ok if a8 is not None and t.values[0] >= a8]
                tiny = min(accurate, key=lambda t: t.values[2], default=None)
                results[arm].append({
                    "hv": hypervolume(study),
                    "acc_at_int8_size": None if best is None else best.values[0],
                    "test_at_int8_size": None if best is None
                    else best.user_attrs.get("test_accuracy"),
                    "size_at_int8_acc": None if tiny is None else tiny.values[2],
                    "test_at_int8_acc": None if tiny is None
                    else tiny.user_attrs.get("test_accuracy"),
                })
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
    for arm in ARMS:
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
        ])
    uni, same, per, timed = (results[a] for a in ARMS)
    wins = sum(p["hv"] > u["hv"] for p, u in zip(per, uni, strict=True))
    wins_same = sum(p["hv"] > u["hv"] for p, u in zip(per, same, strict=True))
    wins_timed = sum(p["hv"] > u["hv"] for p, u in zip(timed, uni, strict=True))
    int8_text = (f"mean {statistics.mean(int8_accs):.4f} over seeds" if int8_accs
                 else "no int8 seed trial completed")
    body = "\n".join([
        f"## Per-layer precision against uniform precision ({task_label})",
        "",
        f"`python -m benchmarks --only mixed --task {task_label} --trials {n_trials} "
        f"--seeds {len(seeds)}` — {len(seeds)} seeds × {n_trials} trials per arm, "
        f"{workers} trials at a time, max accuracy drop {drop} (90 % lower bound), the "
        f"arms of a seed run one after the other. Searches took {minutes:.0f} min in "
        f"all. "
        f"Machine: {machine()}.",
        "",
        "Arms: *uniform* searches `quant_bits` over fp32/bf16/int8/int4; *uniform, same "
        "menu* over fp32/int8/int4; *per-layer* searches `bit_budget` in [5.5, 16] "
        "effective bits, each Linear at fp32/int8/int4 by measured sensitivity; *per-layer, "
        "latency budget* also searches `latency_budget` in [0.5, 1.5] (the layers' time "
        "from the per-layer timing table, as a share of fp32's). All other "
        "parameters as the task's preset. Hypervolume as in the hypervolume section "
        "(reference (−0.9, 1.5, 1.5) of the teacher). 'at int8 size': the best validation "
        f"accuracy among feasible trials no larger than the teacher stored uniformly int8 "
        f"({int8_size / 1024:.1f} KiB), test beside it; 'at int8 accuracy': the smallest "
        "feasible trial at least as accurate on validation as the uniform arm's int8 seed "
        f"trial ({int8_text}).",
        "",
        table(["arm", "hypervolume", "val acc at int8 size", "test", "KiB at int8 acc",
               "test"], rows),
        "",
        f"Per-layer hypervolume higher than uniform in {wins} of {len(per)} seeds, than "
        f"uniform-same-menu in {wins_same} of {len(per)}; per-layer with a latency budget "
        f"higher than uniform in {wins_timed} of {len(timed)}.",
    ])
    write_section(f"mixed-{task_label}", body)
