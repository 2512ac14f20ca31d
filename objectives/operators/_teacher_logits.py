"""The teacher's logits on the training split: computed once per task, shared by every trial.

Classifiers cache every logit (rows × classes). Language models have a logit per position
and vocabulary entry — 3,000 sequences of 64 tokens over a 32k vocabulary are 25 GB — so
token-level tasks cache the teacher's ``k`` largest logits per position (``TopKLogits``)
when the full tensor would exceed ``FULL_LOGITS_LIMIT`` (or always, with
``Task.logit_cache_topk``). Distillation then matches the student's and the teacher's
distributions, both renormalised over those ``k`` tokens (``distillation_loss``), so the
student is not pushed to drop its tail; the hard-label term sees the whole vocabulary.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from objectives._cache import cache_dir
from objectives._task import Split, Task
from objectives.measure._metric import logit_batches

FULL_LOGITS_LIMIT = 256 * 2**20
"""Bytes above which a token-level task's teacher logits are cached as their top ``k``."""
DEFAULT_TOPK = 64
"""``k`` of the top-k cache when the task does not set ``logit_cache_topk``."""


@dataclass(frozen=True)
class TopKLogits:
    """The ``k`` largest teacher logits per position and their vocabulary indices.

    ``values`` (float32) and ``indices`` (int64) are ``[rows, tokens, k]``, sorted in
    decreasing order of value; indexing selects rows (or, with a boolean position mask,
    positions) of both.
    """

    values: torch.Tensor
    indices: torch.Tensor

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def __getitem__(self, index: torch.Tensor | slice) -> TopKLogits:
        return TopKLogits(self.values[index], self.indices[index])

    def to(self, device: torch.device | str) -> TopKLogits:
        return TopKLogits(self.values.to(device), self.indices.to(device))


TeacherLogits = torch.Tensor | TopKLogits


def logit_topk(task: Task) -> int | None:
    """``k`` of the top-k teacher cache for ``task``, or ``None`` to cache full logits."""
    if not task.train.token_level:
        return None
    rows, tokens = (int(d) for d in task.train.labels.shape)
    if task.logit_cache_topk is not None:
        return min(task.logit_cache_topk, task.num_classes)
    if rows * tokens * task.num_classes * 4 <= FULL_LOGITS_LIMIT:
        return None
    return min(DEFAULT_TOPK, task.num_classes)


@torch.no_grad()
def _predict_topk(
    model: nn.Module, split: Split, k: int, *, batch_size: int = 32,
    device: torch.device | str = "cpu",
) -> TopKLogits:
    values, indices = [], []
    for _, (v, i) in logit_batches(
        model, split, batch_size=batch_size, device=device,
        then=lambda logits: _cpu_topk(logits, k),
    ):
        values.append(v)
        indices.append(i)
    return TopKLogits(torch.cat(values), torch.cat(indices))


def _cpu_topk(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    top = torch.topk(logits.float(), k, dim=-1)
    return top.values.cpu(), top.indices.cpu()


@torch.no_grad()
def predict_logits(
    model: nn.Module, split: Split, *, batch_size: int = 256, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Logits of ``model`` over ``split`` in eval mode, as float32 on the CPU."""
    return torch.cat([out for _, out in logit_batches(model, split, batch_size=batch_size,
                                                       device=device)])


_TEACHER_LOGITS: dict[str, TeacherLogits] = {}  # fingerprint(+top-k) -> logits, this process


def _key(task: Task, device: torch.device | str = "cpu") -> str:
    """Cache key: the task's fingerprint, the top-k (if any), and for a non-CPU device its
    kind and the teacher's precision — logits computed on a GPU (other kernels, TF32) are
    not the CPU's, so trials on one device never read another's."""
    k = logit_topk(task)
    key = task.fingerprint if k is None else f"{task.fingerprint}-top{k}"
    dev = torch.device(device)
    if dev.type != "cpu":
        dtype = next((p.dtype for p in task.teacher.parameters()), torch.float32)
        key += f"-{dev.type}-{str(dtype).removeprefix('torch.')}"
    return key


def teacher_logits_file(task: Task, device: torch.device | str = "cpu") -> Path:
    """Where ``teacher_train_logits`` keeps ``task``'s logits (computed on ``device``)."""
    return cache_dir() / "logits" / f"{task.name}-{_key(task, device)}.safetensors"


def forget_teacher_logits(
    task: Task, *, on_disk: bool = False, device: torch.device | str = "cpu"
) -> None:
    """Drop ``task``'s teacher logits computed on ``device`` from this process's memory
    (and, with ``on_disk``, from the disk cache), so the next ``teacher_train_logits``
    recomputes or re-reads them.
    """
    _TEACHER_LOGITS.pop(_key(task, device), None)
    if on_disk:
        teacher_logits_file(task, device).unlink(missing_ok=True)


def teacher_train_logits(task: Task, device: torch.device | str = "cpu") -> TeacherLogits:
    """The teacher's logits on ``task.train`` (float32, CPU), computed once per task.

    A ``TopKLogits`` instead of a tensor for token-level tasks whose full logits are too
    large to cache (``logit_topk``).

    Cached in memory per process and on disk under the cache directory, keyed by the
    task's fingerprint (teacher weights + data) and, off the CPU, the device kind and
    precision, so every trial of a study on one kind of device — in any worker process —
    reuses one forward pass of the teacher over the training set. The shared teacher is
    never moved: off the CPU a copy of it runs.
    The disk file is written atomically; a corrupt or mismatched file is recomputed.
    """
    key = _key(task, device)
    if key in _TEACHER_LOGITS:
        return _TEACHER_LOGITS[key]
    k = logit_topk(task)
    path = teacher_logits_file(task, device)
    logits: TeacherLogits | None = None
    if path.exists():
        try:
            stored = load_file(str(path))
            logits = (
                stored["logits"] if k is None
                else TopKLogits(stored["values"], stored["indices"].long())
            )
            if len(logits) != len(task.train):
                logits = None
        except Exception:  # unreadable cache entry: recompute it
            logits = None
    if logits is None:
        on_cpu = torch.device(device).type == "cpu"
        teacher = task.teacher if on_cpu else copy.deepcopy(task.teacher).to(device)
        if k is None:
            logits = predict_logits(teacher, task.train, device=device)
            tensors = {"logits": logits.contiguous()}
        else:
            logits = _predict_topk(teacher, task.train, k, device=device)
            tensors = {"values": logits.values.contiguous(),
                       "indices": logits.indices.int().contiguous()}
        del teacher
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            save_file(tensors, str(tmp))
            os.replace(tmp, path)
        except OSError:
            pass  # the cache is an optimisation; a read-only disk must not fail trials
    _TEACHER_LOGITS[key] = logits
    return logits
