"""Matplotlib Pareto plots (headless)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from search._pareto import ParetoFront


def plot_front(front: ParetoFront, path: Path) -> Path:
    """Accuracy vs latency and accuracy vs size: all trials, the front, the teacher."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    on_front = {c.trial for c in front.candidates}
    base = front.baseline
    for ax, key, label in (
        (axes[0], "latency_ms", "latency per forward pass (ms)"),
        (axes[1], "size_bytes", "serialized size (KiB)"),
    ):
        scale = 1 / 1024 if key == "size_bytes" else 1.0
        rest = [t for t in front.trials if t.trial not in on_front]
        feas = [t for t in rest if t.trial not in front.infeasible]
        infeas = [t for t in rest if t.trial in front.infeasible]
        ax.scatter(
            [getattr(t, key) * scale for t in feas],
            [t.accuracy for t in feas],
            c="#9e9e9e", s=18, label="trial",
        )
        if infeas:
            ax.scatter(
                [getattr(t, key) * scale for t in infeas],
                [t.accuracy for t in infeas],
                c="#d0a0a0", marker="x", s=18, label="trial (breaks accuracy constraint)",
            )
        pts = sorted(front.candidates, key=lambda c: getattr(c, key))
        ax.scatter(
            [getattr(c, key) * scale for c in pts],
            [c.accuracy for c in pts],
            c="#d62728", s=36, label="Pareto front", zorder=3,
        )
        ax.scatter(
            [base[key] * scale], [base["accuracy"]], marker="*", s=220, c="black",
            label="teacher (uncompressed)", zorder=4,
        )
        if front.max_accuracy_drop is not None:
            ax.axhline(
                base["accuracy"] - front.max_accuracy_drop, ls="--", lw=1, c="#555555",
                label=f"accuracy floor (−{front.max_accuracy_drop:g})",
            )
        ax.set_xscale("log")
        # plain numbers on the log axis; minor ticks unlabelled (they collide)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"slimsearch study {front.study_name!r}: {len(front)} Pareto-optimal of "
                 f"{len(front.trials)} trials")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
