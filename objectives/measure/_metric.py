"""The accuracy objective: the task's metric of a model on held-out data.

Each batch holds the machine's measurement lock shared (see ``MeasurementLock``), so it
never runs while another trial on the machine is timing latency.

For token labels (language models) the logits of a whole split (rows × tokens ×
vocabulary) would not fit in memory, so the metric is computed per batch and averaged
with each batch weighted by its counted tokens: exact for per-token means such as
next-token accuracy, which is what a token-level ``Task.metric`` must be.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from objectives._task import IGNORE_INDEX, Split, Task, forward, take, to_device
from objectives.measure._lock import working

TOKEN_BATCH_ROWS = 32
"""Most rows per forward pass of a token-level split (its logits are rows × tokens ×
vocabulary floats)."""


def _to_cpu(logits: torch.Tensor) -> torch.Tensor:
    return logits.float().cpu()


def logit_batches(
    model: nn.Module,
    split: Split,
    *,
    batch_size: int,
    device: torch.device | str,
    then: Callable[[torch.Tensor], Any] = _to_cpu,
) -> Iterator[tuple[slice, Any]]:
    """``(rows, then(logits))`` for consecutive batches of ``split`` in eval mode — the one
    batched forward loop of the package (metrics, per-row outcomes, teacher logits).

    Each forward and ``then`` (default: float32 on the CPU) run under the measurement lock
    (a unit of work: another trial's latency timing waits for it); token-level splits go
    in batches of at most ``TOKEN_BATCH_ROWS`` rows. The caller chooses the grad mode.
    """
    model.eval()
    if split.token_level:
        batch_size = min(batch_size, TOKEN_BATCH_ROWS)
    for start in range(0, len(split), batch_size):
        rows = slice(start, start + batch_size)
        with working():
            xb = to_device(take(split.inputs, rows), device)
            out = then(forward(model, xb))
        yield rows, out


def _batches(
    model: nn.Module, split: Split, batch_size: int, device: torch.device | str
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(labels, float logits on CPU)`` per batch of ``split`` (``logit_batches``)."""
    for rows, logits in logit_batches(model, split, batch_size=batch_size, device=device):
        yield split.labels[rows], logits


@torch.inference_mode()
def evaluate_metric(
    model: nn.Module,
    split: Split,
    task: Task,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> float:
    """``task.metric`` of ``model`` over ``split`` (eval mode)."""
    if split.token_level:
        total, counted = 0.0, 0
        for labels, logits in _batches(model, split, batch_size, device):
            n = int((labels != IGNORE_INDEX).sum())
            if n:
                total += float(task.metric(logits, labels)) * n
                counted += n
        return total / counted if counted else float("nan")
    logits = [out for _, out in _batches(model, split, batch_size, device)]
    return float(task.metric(torch.cat(logits), split.labels))


@torch.inference_mode()
def evaluate_perplexity(
    model: nn.Module,
    split: Split,
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
) -> float:
    """``exp`` of the mean next-token cross-entropy over the counted labels of ``split``.

    Token labels only (language models); reported beside the metric, never ranked on.
    """
    if not split.token_level:
        raise ValueError("perplexity needs token labels ([rows, tokens])")
    total, counted = 0.0, 0
    for labels, logits in _batches(model, split, batch_size, device):
        total += float(
            F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                ignore_index=IGNORE_INDEX, reduction="sum",
            )
        )
        counted += int((labels != IGNORE_INDEX).sum())
    return math.exp(total / counted) if counted else float("nan")


@torch.inference_mode()
def row_outcomes(
    model: nn.Module,
    split: Split,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row ``(hits, counts)`` of arg-max predictions on ``split`` (int64 tensors).

    ``counts`` is 1 per row for class labels and the number of counted positions for
    token labels; ``hits.sum() / counts.sum()`` is ``objectives.accuracy`` over the split.
    The paired accuracy difference to the teacher is computed from these
    (``objectives.measure._paired``).
    """
    hits, counts = [], []
    for labels, logits in _batches(model, split, batch_size, device):
        pred = logits.argmax(dim=-1)
        counted = labels != IGNORE_INDEX
        right = (pred == labels) & counted
        if labels.dim() == 2:
            hits.append(right.sum(dim=1))
            counts.append(counted.sum(dim=1))
        else:
            hits.append(right.long())
            counts.append(counted.long())
    return torch.cat(hits).long(), torch.cat(counts).long()
