"""The accuracy constraint judged on the paired lower bound at the study's confidence."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from search import Search, SearchArgumentError, StudyMismatchError
from search.study import ATTR_BASELINE, ATTR_CONFIDENCE, CONSTRAINT, accuracy_drop_constraint


def test_a_lucky_point_is_refused_and_a_solid_one_accepted():
    # Teacher 0.900, drop 1 point. Both students measure 0.895 (-0.5 pts on validation).
    lucky = accuracy_drop_constraint(0.895, 0.900, 0.01, se=0.008, confidence=0.9)
    solid = accuracy_drop_constraint(0.895, 0.900, 0.01, se=0.002, confidence=0.9)
    # lower bounds: 0.895 - 1.2816 * 0.008 = 0.8847 < 0.89 ; 0.895 - 0.0026 = 0.8924 >= 0.89
    assert lucky == pytest.approx(0.900 - (0.895 - 1.2815516 * 0.008) - 0.01)
    assert lucky > 0 and solid <= 0
    # Without a standard error (a metric other than accuracy): the point estimate.
    assert accuracy_drop_constraint(0.895, 0.900, 0.01) <= 0
    assert accuracy_drop_constraint(0.895, 0.900, None, se=0.1, confidence=0.9) == -1.0
    # One validation row: the uncertainty is unbounded, so nothing is shown within.
    assert accuracy_drop_constraint(0.95, 0.900, 0.01, se=float("inf"), confidence=0.9) > 0


def test_searched_trials_are_judged_at_the_stored_confidence(searched):
    url, name, front = searched
    study = optuna.load_study(study_name=name, storage=url)
    assert study.user_attrs[ATTR_CONFIDENCE] == 0.9
    base = study.user_attrs[ATTR_BASELINE]["accuracy"]
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        se = t.user_attrs["accuracy_delta_se"]
        assert t.user_attrs["accuracy_delta"] == pytest.approx(t.values[0] - base)
        want = accuracy_drop_constraint(t.values[0], base, 0.05, se=se, confidence=0.9)
        assert t.constraints[CONSTRAINT] == pytest.approx(want)
    assert front.accuracy_confidence == 0.9
    for c in front:  # every front point holds at the confidence
        assert front.accuracy_lower(c) >= base - 0.05 - 1e-12


def test_confidence_is_checked_and_kept_with_the_study(searched, digits_task):
    url, name, _ = searched
    with pytest.raises(SearchArgumentError, match=r"accuracy_confidence must be .* got 1\.0"):
        Search(digits_task, accuracy_confidence=1.0)
    with pytest.raises(StudyMismatchError, match="accuracy_confidence=0.9"):
        Search(digits_task, storage=url, study_name=name, n_trials=9,
               accuracy_confidence=0.95, progress=False).run()


def test_a_lucky_stored_trial_is_off_the_front_and_listed_uncertain(searched_copy, capsys):
    from search import StudyInfo, load_front
    from search._cli import main
    from search.results import study_status
    from tests.search._stored import add_trial

    url, name = searched_copy
    study = optuna.load_study(study_name=name, storage=url)
    info = StudyInfo.from_study(study, url)
    base = info.baseline["accuracy"]
    before = study_status(url, name).uncertain  # searched trials may be uncertain already
    # Smallest and fastest, -4 pts on validation (within the study's 5), but its bound
    # -4 - 1.28 * 2 = -6.6 pts is not: within the drop only by luck, maybe.
    lucky = add_trial(study, info, accuracy=base - 0.04, se=0.02, latency_ms=1e-3,
                      size_bytes=1)
    assert study.trials[lucky].constraints[CONSTRAINT] > 0
    # ... while one with a tight interval there would be on the front (the test can fail).
    solid = add_trial(study, info, accuracy=base - 0.04, se=0.001, latency_ms=2e-3,
                      size_bytes=2)
    best = {t.number for t in study.best_trials}
    assert solid in best and lucky not in best
    front, _ = load_front(url, name)
    assert {c.trial for c in front} == best
    status = study_status(url, name)
    assert status.uncertain == (*before, lucky)
    assert status.best["size_bytes"][0] == solid
    assert main(["status", "--storage", url, "--study", name]) == 0
    out = capsys.readouterr().out
    assert f"uncertain: trials {', '.join(map(str, (*before, lucky)))} are within the " \
        "drop" in out
    # each best-so-far line carries its trial's change and margin at the confidence
    size_line = next(line for line in out.splitlines() if line.lstrip().startswith("size_bytes"))
    assert f"accuracy -4.00 ± {100 * 1.2815516 * 0.001:.2f} pts" in size_line
    assert f"(trial {solid})" in size_line
    assert "lower end: 90 % bound" in out


def test_a_study_from_before_accuracy_confidence_resumes_without_it(searched_copy, digits_task):
    from search.study import ATTR_CONFIDENCE

    url, name = searched_copy
    optuna.load_study(study_name=name, storage=url).set_user_attr(ATTR_CONFIDENCE, None)
    with pytest.raises(StudyMismatchError, match=r"resume it without accuracy_confidence "
                                                 r"\(--accuracy-confidence\)"):
        Search(digits_task, storage=url, study_name=name, n_trials=8,
               accuracy_confidence=0.9, progress=False).run()
    front = Search(digits_task, storage=url, study_name=name, n_trials=8,
                   progress=False).run()  # finished, re-timed: returns the stored front
    assert front.accuracy_confidence is None and len(front) >= 1


def test_export_keeps_only_points_that_hold_on_the_confirmation_rows():
    from search import NoCandidateError
    from search.results import Candidate, ParetoFront

    def point(trial, size, acc, confirm_delta, confirm_se=0.002, se=0.002):
        return Candidate(trial, {}, acc, 1.0, size, attrs={
            "accuracy_delta_se": se, "confirm_delta": confirm_delta,
            "confirm_delta_se": confirm_se})

    # Teacher 0.90. Trial 1 is smallest and -0.5 pts on validation, but -3 pts on the
    # confirmation rows: it held on validation by luck. Trial 2 holds on both.
    front = ParetoFront(
        [point(1, 100, 0.895, -0.03), point(2, 200, 0.897, -0.002)],
        baseline={"accuracy": 0.90, "latency_ms": 2.0, "size_bytes": 1000},
        study_name="s", max_accuracy_drop=0.01, accuracy_confidence=0.9,
    )
    assert front.best(prefer="size").trial == 1  # no drop asked: the smallest
    assert front.best(prefer="size", max_accuracy_drop=0.01).trial == 2
    assert not front.confirm_holds(front.get(1), 0.01) and front.confirm_holds(front.get(2), 0.01)
    # A wide confirmation interval is not enough either (lower bound -0.2 - 1.28 * 1 pts).
    wide = ParetoFront([point(3, 100, 0.899, -0.002, confirm_se=0.01)],
                       baseline={"accuracy": 0.90, "latency_ms": 2.0, "size_bytes": 1000},
                       study_name="s", max_accuracy_drop=0.01, accuracy_confidence=0.9)
    with pytest.raises(NoCandidateError):
        wide.best(max_accuracy_drop=0.01)


def test_trials_report_paired_figures_on_the_confirmation_rows(digits_task):
    import dataclasses

    from objectives import CompressionConfig, Split, evaluate, evaluate_teacher
    from objectives._task import take

    rows = slice(0, len(digits_task.test) // 2)
    task = dataclasses.replace(
        digits_task,
        test=Split(take(digits_task.test.inputs, slice(rows.stop, None)),
                   digits_task.test.labels[rows.stop:]),
        confirm=Split(take(digits_task.test.inputs, rows), digits_task.test.labels[rows]),
    )
    assert task.fingerprint != digits_task.fingerprint
    base = evaluate_teacher(task)
    result = evaluate(task, CompressionConfig(prune_ratio=0.6, quant_bits=8))
    assert base.confirm_accuracy is not None and base.confirm_delta is None
    assert result.confirm_delta == pytest.approx(result.confirm_accuracy - base.confirm_accuracy)
    assert result.confirm_delta_se > 0


def test_a_validation_split_too_small_for_the_promise_is_named(digits_task):
    from search._preflight import split_size_warning

    rows = len(digits_task.val)
    line = split_size_warning(digits_task, 0.01, 0.9)
    assert line is not None and line.startswith(f"validation has {rows} rows")
    assert "takes about 1643 rows" in line  # (1.2816 / 0.01)^2 * 0.1
    assert split_size_warning(digits_task, 0.10, 0.9) is None  # 17 rows suffice for 10 points
    assert split_size_warning(digits_task, None, 0.9) is None
