"""Paired accuracy differences: how sure is "within N points of the teacher"?

A student and its teacher are scored on the *same* validation rows, so their accuracy
difference is estimated far more tightly than either accuracy: rows both get right or both
get wrong cancel, and only the rows where they disagree carry uncertainty. With per-row
outcomes ``(hits_i, counts_i)`` — ``counts_i = 1`` for a classifier row, the number of
counted tokens for a language-model row — the difference is the ratio estimate

    delta = Σ (s_i − t_i) / Σ n_i

(``s_i``, ``t_i``: the student's and teacher's hits on row ``i``), and its standard error
is the ratio estimator's, over rows (rows, not tokens, are the independent units):

    se² = R / (R − 1) · Σ (d_i − delta · n_i)² / (Σ n_i)²,   d_i = s_i − t_i.

For classifiers this is the paired (McNemar-style) standard error of a mean difference.
A one-sided lower bound at confidence ``c`` is ``delta − z_c · se`` (normal approximation;
``z_0.9 = 1.28``). Why not a bootstrap: the normal bound is closed-form (the driver can
re-judge stored trials at any confidence from ``delta`` and ``se`` alone) and agrees with
a paired bootstrap to a few hundredths of a point at the split sizes tasks use (tested).

With fewer than two rows there is no spread to estimate: ``se`` is ``float("inf")``
(nothing is known), never 0, so a lower bound is ``-inf`` and "within N points" cannot
be shown. Callers must treat a non-finite ``se`` as "not shown within", not as "no
standard error recorded".

Caveat for language models: the rows of an LM split are consecutive windows of *one*
packed token stream (``objectives.tasks._causal_lm.pack_tokens``), so neighbouring rows
continue the same text and their differences are positively correlated. The formula
above treats rows as independent, so for LM tasks ``se`` is **understated** (a lower
bound on the true standard error) and "within N points at confidence c" is optimistic;
the confirmation split is the independent check. Clustering rows by source document
would fix this, but rows do not record their document, and a split read from a single
``.txt`` file is one document — no clusters to estimate a spread from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import torch


@dataclass(frozen=True)
class PairedDifference:
    """Student minus teacher accuracy on the same rows (fractions, 0.01 = 1 point).

    Attributes:
        delta: The difference of the pooled accuracies.
        se: Its standard error over rows (``inf`` when fewer than two rows; understated
            for language-model rows, see the module docstring).
        rows: Rows compared.
    """

    delta: float
    se: float
    rows: int

    def lower(self, confidence: float) -> float:
        """One-sided lower confidence bound of ``delta`` at ``confidence`` (e.g. 0.9)."""
        return self.delta - z_score(confidence) * self.se

    def half_width(self, confidence: float) -> float:
        """Half-width of the two-sided interval at ``confidence``."""
        return NormalDist().inv_cdf(0.5 + confidence / 2) * self.se


def z_score(confidence: float) -> float:
    """``z`` of a one-sided bound at ``confidence`` in (0.5, 1)."""
    if not 0.5 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0.5, 1), got {confidence!r}")
    return NormalDist().inv_cdf(confidence)


def lower_bound(value: float, se: float | None, confidence: float | None) -> float:
    """``value − z_score(confidence) · se``: the one-sided lower bound of a paired
    difference (or of an accuracy, shifted by the same margin) at ``confidence``;
    ``value`` itself when ``se`` or ``confidence`` is None (nothing to bound with)."""
    if se is None or confidence is None:
        return float(value)
    return float(value) - z_score(confidence) * float(se)


def paired_difference(
    student_hits: torch.Tensor, teacher_hits: torch.Tensor, counts: torch.Tensor
) -> PairedDifference:
    """The paired accuracy difference of per-row outcomes (see the module docstring).

    Args:
        student_hits, teacher_hits: Per-row number of correct predictions.
        counts: Per-row number of counted predictions (1 per row for classifiers).

    Raises:
        ValueError: the tensors disagree in length or nothing is counted.
    """
    s, t, n = (x.double().reshape(-1) for x in (student_hits, teacher_hits, counts))
    if not (s.numel() == t.numel() == n.numel()):
        raise ValueError(f"per-row outcomes disagree in length: {s.numel()}, {t.numel()}, "
                         f"{n.numel()}")
    total = float(n.sum())
    if total <= 0:
        raise ValueError("no counted predictions")
    d = s - t
    delta = float(d.sum()) / total
    rows = int(n.numel())
    if rows < 2:  # no spread to estimate: unknown, not certain
        return PairedDifference(delta, math.inf, rows)
    resid = d - delta * n
    se = math.sqrt(rows / (rows - 1) * float((resid * resid).sum())) / total
    return PairedDifference(delta, se, rows)


def rows_needed(drop: float, confidence: float, disagreement: float = 0.1) -> int:
    """Validation rows needed before a student exactly as accurate as its teacher can be
    shown within ``drop`` of it at ``confidence``, if they disagree on ``disagreement`` of
    the rows (per-row classifier outcomes; each disagreement moves the difference by ±1)."""
    z = z_score(confidence)
    return math.ceil((z / drop) ** 2 * disagreement)
