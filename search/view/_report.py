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
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.results import ParetoFront
from search.study import (
    METRICS,
    TRIAL_ERROR,
    TRIAL_ERROR_TYPE,
    TRIAL_STOPPED,
    TRIAL_TRACEBACK,
    StudyInfo,
    open_study,
    redact,
)
from search.view import _figures
from search.view._format import AXIS_LABELS as _LABELS
from search.view._format import ci_label, precision, pts_ci

MIN_TRIALS_FOR_IMPORTANCE = 4


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
    study, info = open_study(storage_url, study_name)
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
        "front_2d.png": _figures.png(_figures.front_2d(front)),
        "front_3d.png": _figures.png(_figures.front_3d(front)),
        "history.png": _figures.png(_figures.history(trials, front)),
    }
    if importances:
        figures["importance.png"] = _figures.png(_figures.importance(importances))
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
pre{font-size:.8em;white-space:pre-wrap;max-width:640px;text-align:left}
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
        f" — measured in a worker exactly like a trial"
        + (f", on {_e(base['hardware'])}" if base.get("hardware") else "") + ".</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _layers_cell(c: Any) -> str:
    """" · layers 6.2: 1×int4 …" for a per-layer allocation ("" for uniform precision)."""
    if c.layer_bits is None:
        return ""
    return " · layers&nbsp;" + _e(precision(c.params, c.layer_bits, c.attrs.get("effective_bits")))


def _card(label: str, value: Any) -> str:
    return f"<div class='card'><b>{_e(value)}</b>{_e(label)}</div>"


def _tradeoff_table(front: ParetoFront) -> str:
    base = front.baseline
    alone = base.get("latency_ms_alone") is not None  # the front re-timed alone
    teacher_ms = base["latency_ms_alone"] if alone else base["latency_ms"]
    label = ci_label(front.accuracy_confidence) if any(
        c.attrs.get("accuracy_delta_se") is not None for c in front) else ""
    head = ["trial", "val accuracy", f"Δ accuracy ({label})" if label else "Δ accuracy",
            "test accuracy",
            "latency ms (alone)" if alone else "latency ms", "× faster", "size KiB",
            "× smaller", "coverage", "weights kept"]
    rows = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head)
            + "<th class='l'>configuration</th></tr>"]
    head.append("configuration")
    test = base.get("test_accuracy")
    rows.append(
        "<tr class='teacher'><td class='l'>teacher</td>"
        f"<td>{base['accuracy']:.4f}</td><td></td><td>{'' if test is None else f'{test:.4f}'}"
        f"</td><td>{teacher_ms:.3f}</td><td>1.0×</td>"
        f"<td>{base['size_bytes'] / 1024:.1f}</td><td>1.0×</td><td></td><td>100%</td>"
        + "<td class='l cfg'>uncompressed</td></tr>"
    )
    if not len(front):
        rows.append(f"<tr><td class='l' colspan='{len(head)}'>no completed trial within the "
                    "accuracy constraint yet</td></tr>")
    for c in sorted(front, key=lambda c: c.size_bytes):
        delta = 100 * (c.accuracy - base["accuracy"])
        cls = "good" if delta >= 0 else "bad"
        se = c.attrs.get("accuracy_delta_se")
        cells = [
            f"<td class='l'>{c.trial}</td>",
            f"<td>{c.accuracy:.4f}</td>",
            f"<td class='{cls}'>"
            f"{_e(pts_ci(c.accuracy, base['accuracy'], se, front.accuracy_confidence))} pts</td>",
            f"<td>{'' if c.test_accuracy is None else f'{c.test_accuracy:.4f}'}</td>",
            f"<td>{c.shown_latency_ms:.3f}</td>",
            f"<td>{teacher_ms / c.shown_latency_ms:.1f}×</td>",
            f"<td>{c.size_bytes / 1024:.1f}</td>",
            f"<td>{base['size_bytes'] / c.size_bytes:.1f}×</td>",
            f"<td>{_percent(c.quant_coverage)}</td>",
            f"<td>{_percent(c.params_kept)}</td>",
            "<td class='l cfg'>" + " · ".join(
                f"{_e(k)}&nbsp;{_fmt_param(v)}" for k, v in sorted(c.params.items())
            ) + _layers_cell(c) + "</td>",
        ]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


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
        trace = t.user_attrs.get(TRIAL_TRACEBACK)
        if trace:
            reason_html = (f"{_e(reason)}<details><summary>worker traceback</summary>"
                           f"<pre>{_e(trace)}</pre></details>")
        else:
            reason_html = _e(reason)
        params = ", ".join(f"{k}={_fmt_param(v)}" for k, v in sorted(t.params.items()))
        rows.append(
            f"<tr><td>{t.number}</td><td class='l'>{t.state.name}</td><td class='l'>"
            f"{_e(kind)}</td><td class='l'>{reason_html}</td><td class='l'>{params}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)
