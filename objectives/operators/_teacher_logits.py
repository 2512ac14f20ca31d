"""The teacher's logits on the training split: computed once per task, shared by every trial."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from objectives._cache import cache_dir
from objectives._task import Split, Task, forward, take, to_device
from objectives.measure._lock import working


@torch.no_grad()
def predict_logits(
    model: nn.Module, split: Split, *, batch_size: int = 256, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Logits of ``model`` over ``split`` in eval mode, as float32 on the CPU."""
    model.eval()
    outs = []
    for start in range(0, len(split), batch_size):
        xb = to_device(take(split.inputs, slice(start, start + batch_size)), device)
        with working():  # a unit of work: other trials' latency timing waits for it
            outs.append(forward(model, xb).float().cpu())
    return torch.cat(outs)


_TEACHER_LOGITS: dict[str, torch.Tensor] = {}  # task fingerprint -> logits, this process


def teacher_logits_file(task: Task) -> Path:
    """Where ``teacher_train_logits`` keeps ``task``'s logits on disk."""
    return cache_dir() / "logits" / f"{task.name}-{task.fingerprint}.safetensors"


def forget_teacher_logits(task: Task, *, on_disk: bool = False) -> None:
    """Drop ``task``'s teacher logits from this process's memory (and, with ``on_disk``,
    from the disk cache), so the next ``teacher_train_logits`` recomputes or re-reads them.
    """
    _TEACHER_LOGITS.pop(task.fingerprint, None)
    if on_disk:
        teacher_logits_file(task).unlink(missing_ok=True)


def teacher_train_logits(task: Task, device: torch.device | str = "cpu") -> torch.Tensor:
    """The teacher's logits on ``task.train`` (float32, CPU), computed once per task.

    Cached in memory per process and on disk under the cache directory, keyed by the
    task's fingerprint (teacher weights + data), so every trial of a study — in any
    worker process — reuses one forward pass of the teacher over the training set.
    The disk file is written atomically; a corrupt or mismatched file is recomputed.
    """
    key = task.fingerprint
    if key in _TEACHER_LOGITS:
        return _TEACHER_LOGITS[key]
    path = teacher_logits_file(task)
    logits: torch.Tensor | None = None
    if path.exists():
        try:
            logits = load_file(str(path))["logits"]
            if logits.shape[0] != len(task.train):
                logits = None
        except Exception:  # unreadable cache entry: recompute it
            logits = None
    if logits is None:
        logits = predict_logits(task.teacher.to(device), task.train, device=device)
        task.teacher.to("cpu")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            save_file({"logits": logits.contiguous()}, str(tmp))
            os.replace(tmp, path)
        except OSError:
            pass  # the cache is an optimisation; a read-only disk must not fail trials
    _TEACHER_LOGITS[key] = logits
    return logits
