from __future__ import annotations

import math

import pytest

from objectives import CompressionConfig, EarlyStopping, FinishedTrial, evaluate


def test_rule_stops_when_the_floor_is_out_of_reach():
    rule = EarlyStopping(baseline_accuracy=0.98, max_accuracy_drop=0.01)
    assert rule.reason([0.50], 8, None, None) is None  # fewer than min_epochs
    assert "cannot meet the accuracy floor" in rule.reason([0.50, 0.51], 8, None, None)
    # steep learning curve: 0.60 → 0.80 could still reach 0.97 in 6 more epochs
    assert rule.reason([0.60, 0.80], 8, None, None) is None
    assert rule.reason([0.50, 0.55, 0.56, 0.57, 0.58, 0.59, 0.60, 0.61], 8, None, None) is None


def test_rule_stops_dominated_trials_only():
    done = (FinishedTrial(accuracy=0.97, latency_ms=1.0, size_bytes=1000),)
    rule = EarlyStopping(baseline_accuracy=0.98, max_accuracy_drop=None, finished=done)
    assert "dominated" in rule.reason([0.80, 0.81], 8, 2.0, 2000)
    # faster than the finished trial: not dominated whatever its accuracy
    assert rule.reason([0.80, 0.81], 8, 0.5, 2000) is None
    # could still overtake it on accuracy
    assert rule.reason([0.90, 0.95], 8, 2.0, 2000) is None


def test_evaluate_stops_and_reports_why():
    rule = EarlyStopping(baseline_accuracy=1.0, max_accuracy_drop=0.0, min_gain_per_epoch=0.0,
                         optimism=0.0)
    from objectives.tasks import digits

    task = digits(finetune_epochs=5, latency_batch_size=64)
    cfg = CompressionConfig(prune_ratio=0.9, learning_rate=1e-4)
    result = evaluate(task, cfg, early_stopping=rule)
    assert result.stopped is not None and "accuracy floor" in result.stopped
    assert len(result.epoch_accuracies) == 2
    assert math.isnan(result.test_accuracy)


def test_dominance_uses_latency_and_size_measured_before_finetune(digits_task):
    done = (FinishedTrial(accuracy=1.0, latency_ms=1e-6, size_bytes=1),)
    rule = EarlyStopping(baseline_accuracy=0.5, max_accuracy_drop=None, finished=done,
                         min_epochs=1)
    from objectives.tasks import digits

    task = digits(finetune_epochs=4, latency_batch_size=64)
    result = evaluate(task, CompressionConfig(quant_bits=8), early_stopping=rule)
    assert result.stopped is not None and "dominated" in result.stopped
    assert result.size_bytes > 1 and result.latency_ms > 0
    assert result.epoch_accuracies and len(result.epoch_accuracies) < 4


def test_early_stopping_does_not_change_a_trial_that_finishes(digits_task):
    cfg = CompressionConfig(prune_ratio=0.25, quant_bits=16)
    plain = evaluate(digits_task, cfg, seed=1)
    watched = evaluate(
        digits_task, cfg, seed=1,
        early_stopping=EarlyStopping(baseline_accuracy=0.0, max_accuracy_drop=1.0),
    )
    assert watched.stopped is None
    assert watched.accuracy == plain.accuracy
    assert watched.loss_history == plain.loss_history


@pytest.mark.parametrize("epochs", [1])
def test_no_stop_on_last_epoch(epochs):
    rule = EarlyStopping(baseline_accuracy=1.0, max_accuracy_drop=0.0, min_epochs=1)
    assert rule.reason([0.1], epochs, None, None) is None
