"""The study's figures: the Pareto front (one plotter for the CLI, the API and the report),
a 3-D view, the trial history and parameter importances. Headless (matplotlib Agg)."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from search.study import METRICS
from search.view._format import AXIS_LABELS as _LABELS
from search.view._format import SCALE as _SCALE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from search.results import ParetoFront

_GREY, _RED, _PINK, _BLACK = "#9e9e9e", "#d62728", "#d0a0a0", "black"


def plot_front(front: ParetoFront, path: str | Path) -> Path:
    """Write the Pareto-front figure (``front_2d``) of ``front`` as a PNG; return its path.

    Three panels — accuracy against latency, accuracy against size, latency against
    size — with every completed trial, the front (labelled by trial number), the trials
    that break the accuracy constraint and the teacher.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(png(front_2d(front)))
    return out


def png(fig: Figure) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _log_axis(axis: Any, set_scale: Callable[[str], None]) -> None:
    """A log axis labelled with plain numbers at 1-2-5 steps (no overlapping 10^x)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    set_scale("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def front_2d(front: ParetoFront) -> Figure:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), constrained_layout=True)
    on_front = {c.trial for c in front.candidates}
    rest = [t for t in front.trials if t.trial not in on_front]
    feasible = [t for t in rest if t.trial not in front.infeasible]
    infeasible = [t for t in rest if t.trial in front.infeasible]
    base = front.baseline
    pairs = (("latency_ms", "accuracy"), ("size_bytes", "accuracy"), ("size_bytes", "latency_ms"))
    for ax, (x, y) in zip(axes, pairs):
        def xy(points: Sequence[Any], x: str = x, y: str = y) -> tuple[list[float], list[float]]:
            return ([getattr(p, x) * _SCALE[x] for p in points],
                    [getattr(p, y) * _SCALE[y] for p in points])

        ax.scatter(*xy(feasible), c=_GREY, s=20, label="other trials")
        if infeasible:
            ax.scatter(*xy(infeasible), c=_PINK, marker="x", s=22,
                       label="breaks the accuracy constraint")
        pts = sorted(front.candidates, key=lambda c, x=x: getattr(c, x))
        ax.scatter(*xy(pts), c=_RED, s=40, zorder=3, label="Pareto front")
        for c in pts:
            ax.annotate(str(c.trial), (getattr(c, x) * _SCALE[x], getattr(c, y) * _SCALE[y]),
                        textcoords="offset points", xytext=(4, 4), fontsize=7, color=_RED)
        ax.scatter([base[x] * _SCALE[x]], [base[y] * _SCALE[y]], marker="*", s=240, c=_BLACK,
                   zorder=4, label="teacher")
        if y == "accuracy" and front.max_accuracy_drop is not None:
            ax.axhline(base["accuracy"] - front.max_accuracy_drop, ls="--", lw=1, c="#555555",
                       label=f"accuracy floor (−{front.max_accuracy_drop:g})")
        _log_axis(ax.xaxis, ax.set_xscale)
        if y != "accuracy":
            _log_axis(ax.yaxis, ax.set_yscale)
        ax.set_xlabel(_LABELS[x] + " (log)")
        ax.set_ylabel(_LABELS[y] + (" (log)" if y != "accuracy" else ""))
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"Study {front.study_name!r}: {len(front)} Pareto-optimal of "
                 f"{len(front.trials)} completed trials (labels: trial numbers)")
    return fig


def front_3d(front: ParetoFront) -> Figure:
    plt = _pyplot()
    fig = plt.figure(figsize=(7.5, 6.2), constrained_layout=True)
    ax = fig.add_subplot(projection="3d")
    on_front = {c.trial for c in front.candidates}
    rest = [t for t in front.trials if t.trial not in on_front]

    def coords(points: Sequence[Any]) -> tuple[list[float], list[float], list[float]]:
        return ([math.log10(p.latency_ms) for p in points],
                [math.log10(p.size_bytes / 1024) for p in points],
                [p.accuracy for p in points])

    if rest:
        ax.scatter(*coords(rest), c=_GREY, s=14, depthshade=False, label="other trials")
    ax.scatter(*coords(front.candidates), c=_RED, s=40, depthshade=False, label="Pareto front")
    base = front.baseline
    ax.scatter([math.log10(base["latency_ms"])], [math.log10(base["size_bytes"] / 1024)],
               [base["accuracy"]], marker="*", s=260, c=_BLACK, depthshade=False,
               label="teacher")
    ax.set_xlabel("log10 latency (ms)")
    ax.set_ylabel("log10 size (KiB)")
    ax.set_zlabel("validation accuracy")
    ax.view_init(elev=22, azim=-130)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("All three objectives")
    return fig


def history(trials: Sequence[FrozenTrial], front: ParetoFront) -> Figure:
    plt = _pyplot()
    fig, axes = plt.subplots(3, 1, figsize=(11, 7.5), sharex=True, constrained_layout=True)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
    failed = [t.number for t in trials if t.state == TrialState.FAIL]
    stopped = [t.number for t in trials if t.state == TrialState.PRUNED]
    base = front.baseline
    for i, (ax, metric) in enumerate(zip(axes, METRICS)):
        scale = _SCALE[metric]
        xs = [t.number for t in complete]
        ys = [t.values[i] * scale for t in complete]
        ok = [(x, y) for t, x, y in zip(complete, xs, ys) if t.number not in front.infeasible]
        off = [(x, y) for t, x, y in zip(complete, xs, ys) if t.number in front.infeasible]
        if ok:
            ax.scatter(*zip(*ok), c="#1f77b4", s=16, label="completed trial")
        if off:
            ax.scatter(*zip(*off), c=_PINK, s=16, label="breaks the accuracy constraint")
        best: list[float] = []
        pick = max if metric == "accuracy" else min
        for t in complete:
            if t.number in front.infeasible:
                best.append(best[-1] if best else math.nan)
                continue
            v = t.values[i] * scale
            best.append(pick(best[-1], v) if best and not math.isnan(best[-1]) else v)
        if xs:
            ax.step(xs, best, where="post", c=_RED, lw=1.5, label="best feasible so far")
        ax.axhline(base[metric] * scale, c=_BLACK, ls=":", lw=1, label="teacher")
        for numbers, marker, label in ((failed, "x", "failed"), (stopped, "|", "stopped early")):
            if numbers:
                ax.scatter(numbers, [base[metric] * scale] * len(numbers), marker=marker,
                           c="#7f7f7f", s=30, label=label)
        if metric != "accuracy":
            _log_axis(ax.yaxis, ax.set_yscale)
        ax.set_ylabel(_LABELS[metric])
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8, ncol=3)
    from matplotlib.ticker import MaxNLocator

    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].set_xlabel("trial number")
    fig.suptitle("Trial history")
    return fig


def importance(importances: Mapping[str, Mapping[str, float]]) -> Figure:
    plt = _pyplot()
    params = sorted({p for imp in importances.values() for p in imp})
    fig, axes = plt.subplots(1, len(importances), figsize=(4.2 * len(importances), 0.45 *
                             len(params) + 1.4), sharey=True, constrained_layout=True)
    for ax, (metric, imp) in zip(axes, importances.items()):
        ax.barh(params, [imp.get(p, 0.0) for p in params], color="#1f77b4")
        ax.set_title(_LABELS[metric].split(" (")[0])
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3, axis="x")
    axes[0].invert_yaxis()
    fig.suptitle("Parameter importance per objective (Optuna, normalised to 1)")
    return fig
