"""Plain-text views for the terminal: the front table, a study's status, its failures."""

from __future__ import annotations

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
        + (f" at {100 * status.accuracy_confidence:g} % confidence (paired, same rows)"
           if status.accuracy_confidence is not None else "")
    )
    if status.best:
        label = _format.ci_label(status.accuracy_confidence)
        lines.append(f"best so far ({constraint}" + (f"; Δ pts ± margin, {label}" if label
                                                      and status.best_accuracy else "") + "):")
        for metric, (trial, value) in status.best.items():
            lines.append(f"  {metric:<11} {_best(metric, value, trial, status)}  (trial {trial})")
    else:
        lines.append(f"best so far: no COMPLETE trial meets the constraint ({constraint})")
    if status.uncertain:
        lines.append(
            f"uncertain: trials {', '.join(map(str, status.uncertain))} are within the drop on "
            "validation but not at that confidence (left off the front)"
        )
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


def _best(metric: str, value: float, trial: int, status: StudyStatus) -> str:
    """One best-so-far figure, its change against the teacher and, for every metric,
    the trial's accuracy change with its margin (``pts_ci``)."""
    base = status.baseline
    accuracy, se = status.best_accuracy.get(trial, (None, None))
    ci = ""
    if accuracy is not None and base.get("accuracy") is not None:
        ci = _format.pts_ci(accuracy, base["accuracy"], se, status.accuracy_confidence)
    if metric == "accuracy":
        return _format.accuracy(value) + (f" ({ci} pts vs teacher)" if ci else "")
    change = _format.versus(metric, value, base, word="")
    extra = "; ".join(x for x in (f"{change} vs teacher" if change else "",
                                  f"accuracy {ci} pts" if ci else "") if x)
    return _format.metric(metric, value) + (f" ({extra})" if extra else "")


def print_front(front: ParetoFront) -> None:
    """The front as a table on stdout, the teacher first."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    base = front.baseline
    table = Table(title=f"Pareto front of {front.study_name!r} "
                        f"({len(front)} of {len(front.trials)} trials)")
    lm = base.get("perplexity") is not None  # a language model: perplexity beside accuracy
    latency_col = ("ms/token" if base.get("decode_ms_per_token") == base.get("latency_ms")
                   else "latency ms") if lm else "latency ms"
    confirm = any(c.attrs.get("confirm_delta") is not None for c in front)
    alone = base.get("latency_ms_alone") is not None  # re-timed alone before returning
    teacher_ms = base["latency_ms_alone"] if alone else base["latency_ms"]
    conf = front.accuracy_confidence
    label = _format.ci_label(conf) if any(
        c.attrs.get("accuracy_delta_se") is not None for c in front) else ""
    for col in ("trial", "val acc", f"Δ pts ({label})" if label else "Δ pts",
                *(["confirm Δ"] if confirm else []),
                "test acc", *(["ppl"] if lm else []),
                latency_col + (" (alone)" if alone else ""), "faster",
                *(["in search"] if alone else []), "size KiB", "smaller", "pruned", "bits",
                "coverage", "weights"):
        table.add_column(col, justify="right")
    table.add_row("teacher", _format.accuracy(base["accuracy"]), "", *([""] if confirm else []),
                  _format.optional(base.get("test_accuracy")),
                  *([_format.optional(base.get("perplexity"), ".2f")] if lm else []),
                  f"{teacher_ms:.3f}", "1.0x",
                  *([f"{base['latency_ms']:.3f}"] if alone else []),
                  f"{base['size_bytes'] / 1024:.1f}",
                  "1.0x", "", "32", "", "100%")
    for c in front:
        table.add_row(
            str(c.trial),
            _format.accuracy(c.accuracy),
            _format.pts_ci(c.accuracy, base["accuracy"], c.attrs.get("accuracy_delta_se"), conf),
            *([_format.delta_ci(c.attrs.get("confirm_delta"), c.attrs.get("confirm_delta_se"),
                                conf)]
              if confirm else []),
            _format.optional(c.test_accuracy),
            *([_format.optional(c.attrs.get("perplexity"), ".2f")] if lm else []),
            f"{c.shown_latency_ms:.3f}",
            _format.times(teacher_ms, c.shown_latency_ms),
            *([f"{c.latency_ms:.3f}"] if alone else []),
            f"{c.size_bytes / 1024:.1f}",
            _format.times(base["size_bytes"], c.size_bytes),
            _format.pruning(c.params),
            _format.precision(c.params, c.layer_bits, c.attrs.get("effective_bits")),
            _format.optional(c.quant_coverage, ".0%") if c.layer_bits is None else "",
            _format.optional(c.params_kept, ".0%"),
        )
    searched_on = base.get("hardware")
    # The shown latencies: re-timed together in one session when the front was re-timed,
    # else each trial's own measurement (compared with the teacher's hardware).
    hardware = (base.get("retimed_hardware") or searched_on) if alone else searched_on
    if hardware:
        elsewhere = [] if alone else [
            c.trial for c in front if c.attrs.get("hardware", hardware) != hardware
        ]
        # escape: "[avx2 fma …]" would otherwise be read as rich markup and vanish
        table.caption = f"latency measured on {escape(hardware)}" + (
            f"; trials {', '.join(map(str, elsewhere))} on other hardware (not comparable)"
            if elsewhere else ""
        ) + ("; 'alone': the front and the teacher re-timed in interleaved rounds after the "
             "last trial ('in search': beside other trials, what the search ranked on"
             + (f", measured on {escape(searched_on)}" if searched_on
                and searched_on != hardware else "") + ")"
             if alone else "")
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
