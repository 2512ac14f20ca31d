"""The typed messages across Ray: every field survives the trip, and bad results are judged once."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest

from objectives import LatencyStats, TrialResult
from search.run import EarlyStoppingSpec, TrialReport
from search.run._worker import report_of
from search.study import MISSING_METRIC, NON_FINITE_METRIC, WORKER_ERROR

# What Ray Tune adds to every result a trainable reports.
TUNE_KEYS = {"training_iteration": 1, "done": True, "trial_id": "abc_00000", "pid": 7,
             "time_this_iter_s": 0.5, "config": {"prune_ratio": 0.3}, "node_ip": "1.2.3.4"}


def _every_field_set() -> TrialReport:
    """A report in which every field holds a value that is not its default."""
    values: dict[str, object] = {}
    for i, f in enumerate(fields(TrialReport)):
        if f.name == "epoch_accuracies":
            values[f.name] = (0.5, 0.75)
        elif f.type in ("str | None",):
            values[f.name] = f"{f.name}-value"
        elif f.type in ("int | None",):
            values[f.name] = 100 + i
        else:
            values[f.name] = 0.25 + i
    return TrialReport(**values)


def test_every_field_survives_tune_and_back():
    report = _every_field_set()
    result = {**TUNE_KEYS, **report.to_metrics()}
    assert TrialReport.from_metrics(result) == report


def test_unset_fields_are_left_out_and_read_back_as_unset():
    report = TrialReport(accuracy=0.9, latency_ms=1.5, size_bytes=2048.0)
    metrics = report.to_metrics()
    assert set(metrics) == {"slimsearch_report", "accuracy", "latency_ms", "size_bytes"}
    assert TrialReport.from_metrics(metrics) == report
    assert report.failure() is None
    assert report.attributes() == {}
    assert report.objectives() == [0.9, 1.5, 2048.0]


def test_a_result_that_is_not_ours_is_a_worker_error():
    for result in (None, {}, TUNE_KEYS, {"accuracy": 0.9, "latency_ms": 1, "size_bytes": 2}):
        assert TrialReport.from_metrics(result).failure()[0] == WORKER_ERROR


def test_missing_and_non_finite_objectives_are_failures():
    metrics = TrialReport(0.9, 1.0, 10.0).to_metrics()
    del metrics["latency_ms"]
    kind, message = TrialReport.from_metrics(metrics).failure()
    assert kind == MISSING_METRIC and "latency_ms" in message
    kind, message = TrialReport(0.9, math.inf, math.nan).failure()
    assert kind == NON_FINITE_METRIC and "latency_ms, size_bytes" in message


def test_a_reported_error_wins_and_keeps_its_traceback():
    report = TrialReport.failed("ValueError: bad shape", "ValueError", "Traceback ...")
    back = TrialReport.from_metrics(report.to_metrics())
    assert back.failure() == ("ValueError", "ValueError: bad shape")
    assert back.traceback == "Traceback ..."


def test_a_stopped_trial_is_not_a_failure_despite_partial_objectives():
    report = TrialReport(0.4, math.nan, 0.0, stopped="cannot reach the accuracy floor")
    assert report.failure() is None
    assert "stopped" not in report.attributes()


def test_report_of_carries_every_trial_result_field():
    latency = LatencyStats(median_ms=2.0, p90_ms=2.5, cv=0.05, repeats=30, inner=4, threads=1,
                           batch_size=64, device="cpu")
    result = TrialResult(
        accuracy=0.95, test_accuracy=0.94, latency_ms=2.0, size_bytes=4096, latency=latency,
        num_parameters=1234, epoch_accuracies=[0.9, 0.95],
        timings={"prune_s": 0.1, "finetune_s": 1.0, "quantize_s": 0.2, "measure_s": 0.3,
                 "compute_s": 1.6},
    )
    report = report_of(result, seed=3, device="cpu")
    assert (report.accuracy, report.test_accuracy, report.size_bytes) == (0.95, 0.94, 4096.0)
    assert (report.latency_p90_ms, report.latency_cv) == (2.5, 0.05)
    assert report.num_parameters == 1234 and report.epoch_accuracies == (0.9, 0.95)
    assert (report.prune_s, report.compute_s, report.seed) == (0.1, 1.6, 3)
    with pytest.raises(KeyError, match="no field for the timings"):
        report_of(TrialResult(0.9, 0.9, 1.0, 1, latency, 1, timings={"export_s": 1.0}),
                  seed=0, device="cpu")


def test_report_of_reads_latency_relative_to_the_teacher_timed_beside_it():
    latency = LatencyStats(median_ms=2.0, p90_ms=2.5, cv=0.05, repeats=30, inner=4, threads=1,
                           batch_size=64, device="cpu")
    result = TrialResult(0.9, 0.9, 2.0, 10, latency, 1, reference_latency_ms=4.0)
    # The artifact ran at half the teacher's time beside it; the baseline read 10 ms.
    report = report_of(result, seed=0, device="cpu", baseline_latency_ms=10.0)
    assert report.latency_ms == pytest.approx(5.0)
    assert (report.latency_raw_ms, report.reference_latency_ms) == (2.0, 4.0)
    assert report.attributes()["latency_raw_ms"] == 2.0
    # Without a baseline, or without a teacher timed beside it: the raw median.
    for baseline, reference in ((None, 4.0), (10.0, None), (math.nan, 4.0), (10.0, 0.0)):
        plain = report_of(TrialResult(0.9, 0.9, 2.0, 10, latency, 1,
                                      reference_latency_ms=reference),
                          seed=0, device="cpu", baseline_latency_ms=baseline)
        assert plain.latency_ms == 2.0 and plain.latency_raw_ms is None


def test_early_stopping_spec_is_typed_and_frozen():
    spec = EarlyStoppingSpec(0.97, 0.01, "sqlite:////tmp/x.db", "s")
    with pytest.raises(AttributeError):
        spec.study_name = "other"  # type: ignore[misc]
