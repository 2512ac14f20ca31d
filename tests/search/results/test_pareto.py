from __future__ import annotations

import json

import pytest

from search import Candidate, NoCandidateError, ParetoFront, plot_front

BASE = {"accuracy": 0.95, "latency_ms": 10.0, "size_bytes": 1000, "test_accuracy": 0.94}


def _front() -> ParetoFront:
    cands = [
        Candidate(1, {"quant_bits": 8}, accuracy=0.95, latency_ms=5.0, size_bytes=300),
        Candidate(2, {"quant_bits": 8}, accuracy=0.93, latency_ms=2.0, size_bytes=200),
        Candidate(3, {"quant_bits": 16}, accuracy=0.90, latency_ms=3.0, size_bytes=100),
    ]
    return ParetoFront(cands, baseline=BASE, study_name="s", max_accuracy_drop=None)


def test_best_by_preference():
    front = _front()
    assert front.best("latency").trial == 2
    assert front.best("size").trial == 3
    assert front.best("accuracy").trial == 1
    assert front.best("size", max_accuracy_drop=0.02).trial == 2
    assert front.best("latency", max_accuracy_drop=0.0).trial == 1


def test_best_without_candidate_explains():
    front = ParetoFront([], baseline=BASE, study_name="s", max_accuracy_drop=None)
    with pytest.raises(NoCandidateError, match="no completed feasible trial"):
        front.best()
    cands = [Candidate(1, {}, accuracy=0.5, latency_ms=1.0, size_bytes=1)]
    front = ParetoFront(cands, baseline=BASE, study_name="s", max_accuracy_drop=None)
    with pytest.raises(NoCandidateError, match="closest drops 0.4500"):
        front.best(max_accuracy_drop=0.01)
    with pytest.raises(ValueError, match="prefer"):
        front.best(prefer="speed")  # type: ignore[arg-type]


def test_latency_is_ranked_on_the_retimed_figure():
    # In the search trial 1 looked faster; re-timed alone, trial 2 is: what is shown.
    cands = [
        Candidate(1, {}, accuracy=0.95, latency_ms=1.0, size_bytes=300,
                  attrs={"latency_ms_alone": 4.0}),
        Candidate(2, {}, accuracy=0.94, latency_ms=2.0, size_bytes=200,
                  attrs={"latency_ms_alone": 3.0}),
    ]
    front = ParetoFront(cands, baseline=BASE, study_name="s", max_accuracy_drop=None)
    assert [c.trial for c in front] == [2, 1]
    assert front.best("latency").trial == 2
    assert front.best("latency", max_accuracy_drop=0.01).trial == 2


def test_no_candidate_says_which_test_excluded_the_points():
    def point(trial, acc, se=0.0, **attrs):
        return Candidate(trial, {}, accuracy=acc, latency_ms=1.0, size_bytes=trial,
                         attrs={"accuracy_delta_se": se, **attrs})

    # Teacher 0.95, drop 1 point: 1 drops 3 on validation; 2 is -0.5 but its 90 % bound
    # -0.5 - 1.28 * 1 = -1.78 is not within; 3 holds on validation, not on confirmation.
    front = ParetoFront(
        [point(1, 0.92), point(2, 0.945, se=0.01),
         point(3, 0.948, se=0.001, confirm_delta=-0.05, confirm_delta_se=0.001)],
        baseline=BASE, study_name="s", max_accuracy_drop=0.01, accuracy_confidence=0.9,
    )
    assert [front.exclusion(c, 0.01) for c in front.candidates] == [
        "validation", "lower bound", "confirmation rows"]
    with pytest.raises(NoCandidateError) as err:
        front.best(max_accuracy_drop=0.01)
    text = str(err.value)
    assert "trial 1 drop more on validation (the closest drops 0.0300)" in text
    assert ("trial 2 within it on validation only by the point estimate, not at the 90 % "
            f"lower bound (the closest bound drops {0.005 + 1.2815516 * 0.01:.4f})") in text
    assert ("trial 3 within it on validation but not on the confirmation rows (the closest "
            f"bound there drops {0.05 + 1.2815516 * 0.001:.4f})") in text


def test_json_shape():
    data = json.loads(_front().to_json())
    assert set(data["baseline"]) >= {"accuracy", "latency_ms", "size_bytes"}
    assert [set(c) >= {"trial", "params", "accuracy", "latency_ms", "size_bytes"}
            for c in data["front"]] == [True] * 3


def test_plot_writes_png(searched, tmp_path):
    _, _, front = searched
    path = plot_front(front, tmp_path / "front.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
