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
