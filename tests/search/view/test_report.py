"""``slimsearch report``: the HTML page and PNGs, read back and checked against the study."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search import Search, StudyInfo
from search._cli import main
from search.study import METRICS
from search.view import MIN_TRIALS_FOR_IMPORTANCE, build_report, param_importances
from spaces import SearchSpace

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = {"front_2d.png", "front_3d.png", "history.png", "importance.png"}


def _embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)",
                                                    page)]


def _content(db: Path) -> str:
    """A digest of the study database's rows, read without writing. (The file's bytes
    can change under a reader when a connection of the search that wrote it closes and
    checkpoints its write-ahead log; the rows cannot.)"""
    import sqlite3

    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return hashlib.sha256("\n".join(con.iterdump()).encode()).hexdigest()
    finally:
        con.close()


def test_report_of_a_searched_study(searched, tmp_path, capsys):
    url, name, front = searched
    db = Path(url.removeprefix("sqlite:///"))
    before = _content(db)
    out, pngs = tmp_path / "r" / "report.html", tmp_path / "png"
    assert main(["report", "--storage", url, "--study", name, "-o", str(out),
                 "--png-dir", str(pngs)]) == 0
    assert str(out) in capsys.readouterr().out
    assert _content(db) == before, "report changed the study"

    page = out.read_text(encoding="utf-8")
    # Self-contained: every figure embedded, nothing fetched from elsewhere.
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    embedded = _embedded_pngs(page)
    assert {p.name for p in pngs.iterdir()} == FIGURES
    assert sorted(embedded) == sorted((pngs / f).read_bytes() for f in FIGURES)
    assert all(png.startswith(PNG_MAGIC) and len(png) > 10_000 for png in embedded)

    # The trade-off table: one row per front point, ratios against the teacher.
    base = front.baseline
    table = page.split("<h2>Trade-offs on the Pareto front</h2>")[1].split("<h2>")[0]
    rows = re.findall(r"<tr><td class='l'>(\d+)</td>(.*?)</tr>", table)
    assert sorted(int(n) for n, _ in rows) == sorted(c.trial for c in front)
    for number, cells in rows:
        c = front.get(int(number))
        # speed-ups from the re-timing alone (teacher and front in the same rounds)
        teacher_ms = base.get("latency_ms_alone") or base["latency_ms"]
        assert f"{teacher_ms / c.shown_latency_ms:.1f}×" in cells
        assert f"{base['size_bytes'] / c.size_bytes:.1f}×" in cells
        # the change and its margin z(0.9)·se: "-1.39 ± 0.79 pts", whose lower end is
        # the one-sided 90 % bound the constraint checked
        se = c.attrs["accuracy_delta_se"]
        assert (f"{100 * (c.accuracy - base['accuracy']):+.2f} ± {100 * 1.2815516 * se:.2f} pts"
                in cells)
        assert front.accuracy_lower(c) >= base["accuracy"] - front.max_accuracy_drop - 1e-12
    assert "<th>Δ accuracy (lower end: 90 % bound)</th>" in table
    assert f"<b>{len(front)}</b>on the Pareto front" in page


def test_importances_per_objective(searched):
    url, name, _ = searched
    study = optuna.load_study(study_name=name, storage=url)
    importances, note = param_importances(study)
    assert note == "" and set(importances) == set(METRICS)
    searched_params = set(study.trials[0].params)
    for imp in importances.values():
        assert set(imp) <= searched_params and "prune_ratio" in imp
        assert sum(imp.values()) == pytest.approx(1.0)
        assert all(v >= 0 for v in imp.values())
    # Reproducible: the same study gives the same importances.
    assert param_importances(study)[0] == importances


def test_report_lists_failures_and_explains_missing_importances(tmp_path, ray_session):
    from tests.objectives.models import image_task
    from tests.search.test_crash import FailsInTraining

    # The model raises in its training forward: real FAIL trials.
    task = image_task(FailsInTraining(), name="fails", epochs=2)
    task.teacher.how = "raise"
    url = f"sqlite:///{tmp_path / 'f.db'}"
    space = SearchSpace.default().narrow("quant_bits", choices=[32, 8])
    Search(task, space, storage=url, study_name="f", n_trials=2, seed=5, progress=False).run()
    study = optuna.load_study(study_name="f", storage=url)
    failed = study.get_trials(states=(TrialState.FAIL,))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert failed
    assert len(complete) < MIN_TRIALS_FOR_IMPORTANCE

    report = build_report(study, StudyInfo.from_study(study, url), url)
    assert report.importances == {}
    assert f"need at least {MIN_TRIALS_FOR_IMPORTANCE} completed trials" in report.html
    assert set(report.figures) == FIGURES - {"importance.png"}
    section = report.html.split("<h2>Failures and early stops</h2>")[1].split("<h2>")[0]
    for t in failed:
        assert f"<tr><td>{t.number}</td><td class='l'>FAIL</td>" in section
        assert t.user_attrs["error_type"] in section
    assert section.count("<summary>worker traceback</summary>") == len(failed)
    assert "Traceback (most recent call last)" in section
    assert "cannot train on inputs of shape" in section
    assert f"{len(failed)} × ValueError" in section


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--storage", "sqlite:///{tmp}/missing.db", "--study", "x"], "no database file"),
        (["--storage", "{url}", "--study", "nope"], "no study named 'nope'"),
    ],
)
def test_report_bad_input_is_one_line_exit_2(searched, tmp_path, capsys, args, needle):
    url, _, _ = searched
    out = tmp_path / "r.html"
    args = [a.format(tmp=tmp_path, url=url) for a in args]
    assert main(["report", *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "missing.db").exists()


def test_precision_column_names_each_per_layer_precision():
    from search.view._format import precision

    assert precision({"quant_bits": 8}) == "8"
    bits = {"a": 16, "b": 8, "c": 16, "d": 32, "e": 4}
    assert precision({}, bits, 12.04) == "12.0: 1×int4 1×int8 2×bf16 1×fp32"
    # On a bf16 base the rest of the model runs in bf16 too: the label says so.
    assert precision({"quant_bits": 16}, bits, 12.04) == (
        "12.0: 1×int4 1×int8 2×bf16 1×fp32 on bf16")
