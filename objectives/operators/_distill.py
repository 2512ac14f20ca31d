"""Knowledge-distillation fine-tune of a (pruned) student against its teacher's logits."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from objectives._config import CompressionConfig
from objectives._errors import TrialFailed
from objectives._task import IGNORE_INDEX, Task, forward, take, to_device
from objectives.measure._lock import working
from objectives.operators._teacher_logits import (
    TeacherLogits,
    TopKLogits,
    teacher_train_logits,
)


def _autocast(device: torch.device | str) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast for the forward pass on CUDA; a no-op elsewhere."""
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: TeacherLogits,
    labels: torch.Tensor,
    *,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """``alpha * T² * KL(teacher_T || student_T) + (1 - alpha) * CE(student, labels)``.

    Per row for class labels; per counted position for token labels (``[rows, tokens]``,
    ``IGNORE_INDEX`` positions left out), averaged over counted positions. With
    ``TopKLogits`` the KL compares teacher and student distributions both renormalised
    over the teacher's cached ``k`` tokens (equal to the full KL when ``k`` is the
    vocabulary); the cross-entropy term still sees the student's whole softmax.
    """
    t = temperature
    if labels.dim() == 2:
        counted = labels != IGNORE_INDEX
        student_logits, labels = student_logits[counted], labels[counted]
        teacher_logits = teacher_logits[counted]
    if isinstance(teacher_logits, TopKLogits):
        # Both distributions renormalised over the teacher's top k: matching the
        # student's full softmax to a truncated target would push all of its tail mass
        # onto those k tokens (over-confidence: perplexity grows even as accuracy holds).
        log_p = F.log_softmax(teacher_logits.values / t, dim=-1)
        log_q_top = F.log_softmax(student_logits.gather(-1, teacher_logits.indices) / t, dim=-1)
        kd = (log_p.exp() * (log_p - log_q_top)).sum(-1).mean() * (t * t)
    else:
        kd = F.kl_div(
            F.log_softmax(student_logits / t, dim=-1),
            F.log_softmax(teacher_logits / t, dim=-1),
            reduction="batchmean",
            log_target=True,
        ) * (t * t)
    ce = F.cross_entropy(student_logits, labels)
    return alpha * kd + (1.0 - alpha) * ce


def finetune(
    student: nn.Module,
    task: Task,
    config: CompressionConfig,
    *,
    seed: int,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int, nn.Module], bool] | None = None,
) -> list[float]:
    """Fine-tune ``student`` in place on ``task.train`` with distillation; return epoch losses.

    The run is a deterministic function of the student's weights, the task, the config
    and ``seed`` on a given device and thread count.

    Args:
        on_epoch: Called after each epoch with (epoch index, student); returning True
            stops the fine-tune there (early stopping). The student is in eval mode
            during the call and put back into train mode afterwards.

    Raises:
        TrialFailed: if the loss becomes NaN or infinite.
    """
    teacher_logits = teacher_train_logits(task, device)
    n = len(task.train)
    gen = torch.Generator().manual_seed(seed)
    student.to(device).train()
    optimizer = torch.optim.Adam(student.parameters(), lr=config.learning_rate)
    accum = config.grad_accum_steps
    history: list[float] = []
    for epoch in range(task.finetune_epochs):
        order = torch.randperm(n, generator=gen)
        total, batches = 0.0, 0
        optimizer.zero_grad(set_to_none=True)
        for step, start in enumerate(range(0, n, config.batch_size)):
            idx = order[start : start + config.batch_size]
            with working():
                xb = to_device(take(task.train.inputs, idx), device)
                yb = task.train.labels[idx].to(device)
                tb = teacher_logits[idx].to(device)
                with _autocast(device):
                    student_logits = forward(student, xb)
                loss = distillation_loss(
                    student_logits.float(),
                    tb,
                    yb,
                    temperature=config.distill_temperature,
                    alpha=config.distill_alpha,
                )
                value = float(loss.item())
                if not math.isfinite(value):
                    raise TrialFailed(
                        f"loss became {value} at epoch {epoch} step {step} "
                        f"(learning_rate={config.learning_rate:g}); lower the learning rate"
                    )
                (loss / accum).backward()
                if (step + 1) % accum == 0:
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
            total += value
            batches += 1
        if batches % accum != 0:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        history.append(total / max(batches, 1))
        if on_epoch is not None:
            student.eval()
            stop = on_epoch(epoch, student)
            student.train()
            if stop:
                break
    student.eval()
    return history
