"""Plain-text views for the terminal: the front table, a study's status, its failures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from search.results import ParetoFront, StudyStatus
from search.view import _format


def format_status(
    status: StudyStatus, *, max_failures: int = 20, tracebacks: bool = False
) -> str:
    """Plain-text report: counts, then best so far, then the failures (newest last).

    Args:
        tracebacks: Also print each failure's recorded worker traceback.
    """
    lines = [f"study {status.study_name!r}: " + ", ".join(
        f"{n} {state.lower()}" for state, n in status.counts.items() if n or state == "COMPLETE"
    )]
    base = status.baseline
    if base.get("hardware"):
        lines.append(f"latency measured on: {base['hardware']}")
    constraint = (
        "no accuracy constraint"
        if status.max_accuracy_drop is None
        else f"accuracy drop ≤ {100 * status.max_accuracy_drop:g} pts"
    )
    if status.best:
        lines.append(f"best so far ({constraint}):")
        for metric, (trial, value) in status.best.items():
            lines.append(f"  {metric:<11} {_best(metric, value, base)}  (trial {trial})")
    else:
        lines.append(f"best so far: no COMPLETE trial meets the constraint ({constraint})")
    if status.failures:
        lines.append(
            format_failures(status, max_failures=max_failures, tracebacks=tracebacks)
        )
    return "\n".join(lines)


def format_failures(
    status: StudyStatus, *, max_failures: int = 20, tracebacks: bool = False
) -> str:
    """The failed trials with their reasons, newest last (at most ``max_failures``).

    Args:
        tracebacks: Also print each failure's recorded worker traceback, indented.
    """
    shown = status.failures[-max_failures:] if max_failures > 0 else ()
    lines = [f"failed trials ({len(status.failures)}):"]
    if len(shown) < len(status.failures):
        lines.append(f"  … {len(status.failures) - len(shown)} older failures not shown")
    for f in shown:
        retry = f" → re-queued as trial {f.retried_as}" if f.retried_as is not None else ""
        error = f.error if len(f.error) <= 300 else f.error[:299] + "…"
        lines.append(f"  trial {f.trial}: {f.error_type}: {error}{retry}")
        if tracebacks and f.traceback:
            lines.extend("      " + line for line in f.traceback.rstrip().splitlines())
    if not tracebacks and any(f.traceback for f in shown):
        lines.append("  (worker tracebacks: slimsearch status -v)")
    return "\n".join(lines)


def _best(metric: str, value: float, base: Mapping[str, Any]) -> str:
    change = _format.versus(metric, value, base, word="")
    if metric == "accuracy":
        return _format.accuracy(value) + (f" ({change} vs teacher)" if change else "")
    return _format.metric(metric, value) + (f" ({change} vs teacher)" if change else "")


def print_front(front: ParetoFront) -> None:
    """The front as a table on stdout, the teacher first."""
    from rich.console import Console
    from rich.table import Table

    base = front.baseline
    table = Table(title=f"Pareto front of {front.study_name!r} "
                        f"({len(front)} of {len(front.trials)} trials)")
    for col in ("trial", "val acc", "Δ pts", "test acc", "latency ms", "faster", "size KiB",
                "smaller", "prune", "bits", "coverage", "weights"):
        table.add_column(col, justify="right")
    table.add_row("teacher", _format.accuracy(base["accuracy"]), "",
                  _format.optional(base.get("test_accuracy")), f"{base['latency_ms']:.3f}",
                  "1.0x", f"{base['size_bytes'] / 1024:.1f}", "1.0x", "", "32", "", "100%")
    for c in front:
        table.add_row(
            str(c.trial),
            _format.accuracy(c.accuracy),
            _format.pts(c.accuracy, base["accuracy"]),
            _format.optional(c.test_accuracy),
            f"{c.latency_ms:.3f}",
            _format.times(base["latency_ms"], c.latency_ms),
            f"{c.size_bytes / 1024:.1f}",
            _format.times(base["size_bytes"], c.size_bytes),
            _format.optional(c.params.get("prune_ratio"), ".2f"),
            str(c.params.get("quant_bits", 32)),
            _format.optional(c.quant_coverage, ".0%"),
            _format.optional(c.params_kept, ".0%"),
        )
    hardware = base.get("hardware")
    if hardware:
        elsewhere = [c.trial for c in front if c.attrs.get("hardware", hardware) != hardware]
        table.caption = f"latency measured on {hardware}" + (
            f"; trials {', '.join(map(str, elsewhere))} on other hardware (not comparable)"
            if elsewhere else ""
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
