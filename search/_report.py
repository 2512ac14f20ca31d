"""``slimsearch report``: one self-contained HTML page (and PNGs) judging a study.

The page holds the Pareto front (accuracy / latency / size as three 2-D projections and
one 3-D view), a trade-off table of the front against the teacher (× smaller, × faster,
accuracy change), parameter importances per objective, the trial history with the best
value so far, and the trials that failed or stopped early with their recorded reasons.
Figures are PNGs embedded as ``data:`` URIs, styles are inline: the file opens offline
and can be mailed or attached to an issue as is.

Contract: the report only reads the study; opening a study for a report never creates a
database or changes one.
"""

from __future__ import annotations

import base64
import html
import io
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search._pareto import ParetoFront
from search._storage import redact
from search._study import METRICS, TRIAL_ERROR, TRIAL_ERROR_TYPE, StudyInfo

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MIN_TRIALS_FOR_IMPORTANCE = 4
TRIAL_STOPPED = "stopped"  # user attribute: why a PRUNED trial stopped early
_LABELS = {
    "accuracy": "validation accuracy",
    "latency_ms": "latency (ms)",
    "size_bytes": "size (KiB)",
}
_SCALE = {"accuracy": 1.0, "latency_ms": 1.0, "size_bytes": 1 / 1024}
_GREY, _RED, _PINK, _BLACK = "#9e9e9e", "#d62728", "#d0a0a0", "black"


@dataclass
class Report:
    """A rendered report: the HTML page and its figures.

    Attributes:
        html: The self-contained page.
        figures: Figure file name (e.g. ``"front_2d.png"``) → PNG bytes.
        importances: Objective → {parameter: importance}, empty when not computable.
        importance_note: Why importances are missing, if they are.
    """

    html: str
    figures: dict[str, bytes] = field(default_factory=dict)
    importances: dict[str, dict[str, float]] = field(default_factory=dict)
    importance_note: str = ""


def write_report(
    storage_url: str, study_name: str, output: str | Path, png_dir: str | Path | None = None
) -> Path:
    """Write the HTML report of a study (and its figures as PNG files if ``png_dir``).

    Args:
        storage_url: SQLAlchemy URL of the study's storage.
        study_name: The slimsearch study.
        output: HTML file to write.
        png_dir: Directory for ``front_2d.png``, ``front_3d.png``, ``history.png`` and
            ``importance.png`` (when computable); None for the HTML only.

    Returns:
        The HTML file's path.

    Raises:
        StorageError, StudyNotFoundError, StudyMismatchError: as ``load_front``.
    """
    from search._storage import open_storage
    from search._study import load_existing

    storage = open_storage(storage_url, create=False)
    study = load_existing(storage, study_name, storage_url)
    info = StudyInfo.from_study(study, storage_url)
    report = build_report(study, info, storage_url)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report.html, encoding="utf-8")
    if png_dir is not None:
        folder = Path(png_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in report.figures.items():
            (folder / name).write_bytes(data)
    return out


def build_report(study: optuna.Study, info: StudyInfo, storage_url: str = "") -> Report:
    """Render the report of ``study`` in memory."""
    front = ParetoFront.from_study(study, info)
    trials = study.get_trials(deepcopy=False)
    importances, note = param_importances(study)
    figures = {
        "front_2d.png": _png(_front_2d(front)),
        "front_3d.png": _png(_front_3d(front)),
        "history.png": _png(_history(trials, front)),
    }
    if importances:
        figures["importance.png"] = _png(_importance_figure(importances))
    page = _page(study, info, front, trials, figures, importances, note, storage_url)
    return Report(page, figures, importances, note)


# ------------------------------------------------------------------------ importances
def param_importances(study: optuna.Study) -> tuple[dict[str, dict[str, float]], str]:
    """Optuna's fANOVA parameter importances for each objective, over COMPLETE trials.

    fANOVA (seeded, so a report is reproducible) rather than Optuna's default PED-ANOVA:
    PED-ANOVA ranks by the top quantile of trials, which on small studies can give a
    categorical parameter such as ``quant_bits`` zero importance for size.

    Returns:
        ``({objective: {param: importance}}, note)``; the mapping is empty and the note
        says why when the study has too few trials or nothing varied.
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}, (
            f"parameter importances need at least {MIN_TRIALS_FOR_IMPORTANCE} completed "
            f"trials; this study has {len(complete)}"
        )
    varied = [
        name for name in {p for t in complete for p in t.params}
        if len({repr(t.params.get(name)) for t in complete}) > 1
    ]
    if not varied:
        return {}, "no searched parameter took more than one value"
    out: dict[str, dict[str, float]] = {}
    for i, metric in enumerate(METRICS):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                imp = optuna.importance.get_param_importances(
                    study,
                    evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0),
                    target=_objective(i),
                    params=sorted(varied),
                )
            out[metric] = {k: float(v) for k, v in imp.items()}
        except (RuntimeError, ValueError, ZeroDivisionError) as exc:
            return {}, f"parameter importances could not be computed: {exc}"
    return out, ""


def _objective(i: int) -> Callable[[FrozenTrial], float]:
    return lambda t: float(t.values[i])


# --------------------------------------------------------------------------- figures
def _png(fig: Figure) -> bytes:
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


def _front_2d(front: ParetoFront) -> Figure:
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
    fig.suptitle("Pareto front, two objectives at a time (labels: trial numbers)")
    return fig


def _front_3d(front: ParetoFront) -> Figure:
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


def _history(trials: Sequence[FrozenTrial], front: ParetoFront) -> Figure:
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


def _importance_figure(importances: Mapping[str, Mapping[str, float]]) -> Figure:
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


# ------------------------------------------------------------------------------ HTML
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;
max-width:1320px;padding:0 16px;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{margin-top:1.6em;border-bottom:1px solid #ddd;
padding-bottom:.2em} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:4px 9px;text-align:right;vertical-align:top}
th{background:#f4f4f4} td.l,th.l{text-align:left} tr.teacher td{background:#fafafa;
font-weight:600} .good{color:#1a7f37} .bad{color:#b42318} img{max-width:100%;
border:1px solid #eee} .cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 14px;min-width:140px}
.card b{display:block;font-size:1.4em} .note{color:#666;font-style:italic}
td.cfg{font-size:.85em;color:#444;max-width:520px}
code{background:#f4f4f4;padding:1px 4px;border-radius:3px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _img(figures: Mapping[str, bytes], name: str, alt: str) -> str:
    data = base64.b64encode(figures[name]).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _fmt_param(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return _e(value)


def _page(
    study: optuna.Study,
    info: StudyInfo,
    front: ParetoFront,
    trials: Sequence[FrozenTrial],
    figures: Mapping[str, bytes],
    importances: Mapping[str, Mapping[str, float]],
    importance_note: str,
    storage_url: str,
) -> str:
    base = info.baseline
    count = {s: sum(t.state == s for t in trials) for s in TrialState}
    drop = info.max_accuracy_drop
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>slimsearch report: {_e(info.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>slimsearch report: study <code>{_e(info.name)}</code></h1>",
        f"<p class='sub'>task <code>{_e(info.task.get('name'))}</code> (fingerprint "
        f"{_e(info.task.get('fingerprint'))}) · storage {_e(redact(storage_url)) or '?'} · "
        f"written {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC</p>",
        "<div class='cards'>",
        _card("completed", count[TrialState.COMPLETE]),
        _card("on the Pareto front", len(front)),
        _card("failed", count[TrialState.FAIL]),
        _card("stopped early", count[TrialState.PRUNED]),
        _card("running", count[TrialState.RUNNING]),
        _card("accuracy floor",
              "none" if drop is None else f"−{100 * drop:g} pts"),
        "</div>",
        "<h2>Trade-offs on the Pareto front</h2>",
        "<p>Each row is a Pareto-optimal trial: no other trial is at least as good on all of "
        "validation accuracy, latency and size and better on one. Ratios are against the "
        "uncompressed teacher, measured the same way. Export a row with "
        f"<code>slimsearch export --storage URL --study {_e(info.name)} --trial N "
        "-o recipe.yaml</code>.</p>",
        _tradeoff_table(front),
        "<h2>Pareto front</h2>",
        _img(figures, "front_2d.png", "Pareto front, 2-D projections"),
        _img(figures, "front_3d.png", "Pareto front, 3-D view"),
        "<h2>Parameter importance</h2>",
    ]
    if importances:
        parts.append(
            "<p>How much each searched parameter explains the variation of each objective "
            "over completed trials (Optuna's <code>get_param_importances</code>, fANOVA).</p>"
        )
        parts.append(_img(figures, "importance.png", "parameter importances"))
        parts.append(_importance_table(importances))
    else:
        parts.append(f"<p class='note'>{_e(importance_note)}.</p>")
    parts += [
        "<h2>Trial history</h2>",
        _img(figures, "history.png", "trial history"),
        "<h2>Failures and early stops</h2>",
        _failure_table(trials),
        "<h2>Teacher (baseline)</h2>",
        f"<p>validation accuracy {base['accuracy']:.4f}"
        + (f", test accuracy {base['test_accuracy']:.4f}" if "test_accuracy" in base else "")
        + f", latency {base['latency_ms']:.3f} ms, size {base['size_bytes'] / 1024:.1f} KiB"
        f" — measured in a worker exactly like a trial.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _card(label: str, value: Any) -> str:
    return f"<div class='card'><b>{_e(value)}</b>{_e(label)}</div>"


def _tradeoff_table(front: ParetoFront) -> str:
    base = front.baseline
    head = ["trial", "val accuracy", "Δ accuracy", "test accuracy", "latency ms", "× faster",
            "size KiB", "× smaller"]
    rows = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head)
            + "<th class='l'>configuration</th></tr>"]
    head.append("configuration")
    test = base.get("test_accuracy")
    rows.append(
        "<tr class='teacher'><td class='l'>teacher</td>"
        f"<td>{base['accuracy']:.4f}</td><td></td><td>{'' if test is None else f'{test:.4f}'}"
        f"</td><td>{base['latency_ms']:.3f}</td><td>1.0×</td>"
        f"<td>{base['size_bytes'] / 1024:.1f}</td><td>1.0×</td>"
        + "<td class='l cfg'>uncompressed</td></tr>"
    )
    if not len(front):
        rows.append(f"<tr><td class='l' colspan='{len(head)}'>no completed trial within the "
                    "accuracy constraint yet</td></tr>")
    for c in sorted(front, key=lambda c: c.size_bytes):
        delta = 100 * (c.accuracy - base["accuracy"])
        cls = "good" if delta >= 0 else "bad"
        cells = [
            f"<td class='l'>{c.trial}</td>",
            f"<td>{c.accuracy:.4f}</td>",
            f"<td class='{cls}'>{delta:+.2f} pts</td>",
            f"<td>{'' if c.test_accuracy is None else f'{c.test_accuracy:.4f}'}</td>",
            f"<td>{c.latency_ms:.3f}</td>",
            f"<td>{base['latency_ms'] / c.latency_ms:.1f}×</td>",
            f"<td>{c.size_bytes / 1024:.1f}</td>",
            f"<td>{base['size_bytes'] / c.size_bytes:.1f}×</td>",
            "<td class='l cfg'>" + " · ".join(
                f"{_e(k)}&nbsp;{_fmt_param(v)}" for k, v in sorted(c.params.items())
            ) + "</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _importance_table(importances: Mapping[str, Mapping[str, float]]) -> str:
    params = sorted({p for imp in importances.values() for p in imp},
                    key=lambda p: -max(imp.get(p, 0.0) for imp in importances.values()))
    head = "".join(f"<th>{_e(_LABELS[m].split(' (')[0])}</th>" for m in importances)
    rows = [f"<table><tr><th class='l'>parameter</th>{head}</tr>"]
    for p in params:
        cells = "".join(f"<td>{imp.get(p, 0.0):.2f}</td>" for imp in importances.values())
        rows.append(f"<tr><td class='l'>{_e(p)}</td>{cells}</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _failure_table(trials: Sequence[FrozenTrial]) -> str:
    bad = [t for t in trials if t.state in (TrialState.FAIL, TrialState.PRUNED)]
    if not bad:
        return "<p>None: every finished trial completed.</p>"
    kinds: dict[str, int] = {}
    for t in bad:
        kind = (t.user_attrs.get(TRIAL_ERROR_TYPE) or "unknown error"
                if t.state == TrialState.FAIL else "stopped early")
        kinds[kind] = kinds.get(kind, 0) + 1
    summary = ", ".join(f"{n} × {_e(k)}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    rows = [f"<p>{len(bad)} of {len(trials)} trials: {summary}.</p>",
            "<table><tr><th>trial</th><th class='l'>state</th><th class='l'>type</th>"
            "<th class='l'>reason</th><th class='l'>parameters</th></tr>"]
    for t in bad:
        if t.state == TrialState.FAIL:
            kind = t.user_attrs.get(TRIAL_ERROR_TYPE, "")
            reason = t.user_attrs.get(TRIAL_ERROR, "no error recorded")
        else:
            kind = "stopped early"
            reason = t.user_attrs.get(TRIAL_STOPPED, "pruned")
        reason = str(reason)
        if len(reason) > 400:
            reason = reason[:400] + "…"
        params = ", ".join(f"{k}={_fmt_param(v)}" for k, v in sorted(t.params.items()))
        rows.append(
            f"<tr><td>{t.number}</td><td class='l'>{t.state.name}</td><td class='l'>"
            f"{_e(kind)}</td><td class='l'>{_e(reason)}</td><td class='l'>{params}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)
