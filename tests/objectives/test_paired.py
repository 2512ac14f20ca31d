"""Paired accuracy differences on constructed outcomes with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from objectives.measure._paired import paired_difference, rows_needed, z_score


def test_identical_predictions_have_zero_difference_and_zero_error():
    hits = torch.tensor([1, 0, 1, 1, 0])
    d = paired_difference(hits, hits, torch.ones(5))
    assert d.delta == 0.0 and d.se == 0.0 and d.rows == 5


def test_classifier_rows_give_the_paired_standard_error_of_the_mean_difference():
    # 100 rows: student loses 6 rows the teacher gets, wins 2 rows the teacher misses.
    s = torch.ones(100)
    t = torch.ones(100)
    s[:6] = 0
    t[6:8] = 0
    s[8:38] = t[8:38] = 0  # 30 rows both get wrong: they cancel in the paired difference
    d = paired_difference(s, t, torch.ones(100))
    diffs = (s - t).double()
    assert d.delta == pytest.approx(-0.04)
    # Known answer: the sample standard deviation of the per-row differences / sqrt(n).
    assert d.se == pytest.approx(float(diffs.std(unbiased=True)) / 10.0, rel=1e-12)
    # Unpaired errors would be ~sqrt(p(1-p)/n) each: the paired one is smaller here.
    assert d.se < 0.5 * math.sqrt(0.64 * 0.36 / 100 + 0.68 * 0.32 / 100)
    assert d.lower(0.9) == pytest.approx(-0.04 - 1.2815515655 * d.se, rel=1e-9)
    assert d.half_width(0.9) == pytest.approx(1.6448536270 * d.se, rel=1e-9)


def test_token_rows_are_pooled_and_rows_are_the_unit():
    s = torch.tensor([5.0, 2.0, 9.0])
    t = torch.tensor([6.0, 2.0, 8.0])
    n = torch.tensor([10.0, 4.0, 16.0])
    d = paired_difference(s, t, n)
    assert d.delta == pytest.approx((16 - 16) / 30)
    resid = (s - t) - d.delta * n
    assert d.se == pytest.approx(math.sqrt(1.5 * float((resid ** 2).sum())) / 30)


def test_normal_bound_agrees_with_a_paired_bootstrap():
    gen = torch.Generator().manual_seed(0)
    t = (torch.rand(400, generator=gen) < 0.85).double()
    flip = torch.rand(400, generator=gen) < 0.08
    s = torch.where(flip, 1 - t, t)
    d = paired_difference(s, t, torch.ones(400))
    idx = torch.randint(0, 400, (4000, 400), generator=gen)
    boot = (s[idx] - t[idx]).mean(dim=1)
    assert float(boot.std()) == pytest.approx(d.se, rel=0.08)


def test_bad_inputs_and_the_rows_needed_for_a_promise():
    with pytest.raises(ValueError, match="disagree in length"):
        paired_difference(torch.ones(3), torch.ones(2), torch.ones(3))
    with pytest.raises(ValueError, match="confidence"):
        z_score(1.0)
    # 1 point at 90 % with 10 % of rows disagreeing: (1.2816 / 0.01)^2 * 0.1 rows.
    assert rows_needed(0.01, 0.9) == math.ceil((1.2815515655 / 0.01) ** 2 * 0.1)


def test_a_single_row_claims_nothing():
    d = paired_difference(torch.tensor([1.0]), torch.tensor([1.0]), torch.ones(1))
    assert d.delta == 0.0 and d.rows == 1
    assert d.se == math.inf  # no spread to estimate: unknown, not certain
    assert d.lower(0.9) == -math.inf and not math.isfinite(d.half_width(0.9))
