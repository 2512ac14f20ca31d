"""``Task``: a teacher model, its data splits, a metric and how latency is measured."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import nn

from objectives._errors import TaskError

Inputs = torch.Tensor | Mapping[str, torch.Tensor]

CALIBRATION_ROWS = 256
"""Rows of ``train`` that static quantization calibrates activation ranges on."""


def _rows(inputs: Inputs) -> int:
    if isinstance(inputs, Mapping):
        lengths = {int(v.shape[0]) for v in inputs.values()}
        if len(lengths) != 1:
            raise TaskError(f"input tensors disagree on the number of rows: {sorted(lengths)}")
        return lengths.pop()
    return int(inputs.shape[0])


def take(inputs: Inputs, index: torch.Tensor | slice) -> Inputs:
    """Rows ``index`` of ``inputs`` (a tensor or a mapping of tensors)."""
    if isinstance(inputs, Mapping):
        return {k: v[index] for k, v in inputs.items()}
    return inputs[index]


def to_device(inputs: Inputs, device: torch.device | str) -> Inputs:
    """Move ``inputs`` to ``device``."""
    if isinstance(inputs, Mapping):
        return {k: v.to(device) for k, v in inputs.items()}
    return inputs.to(device)


def forward(model: nn.Module, inputs: Inputs) -> torch.Tensor:
    """Run ``model`` on ``inputs`` and return its logits.

    Mappings are passed as keyword arguments (Hugging Face style); outputs with a
    ``logits`` attribute or tuple outputs are reduced to the logits tensor.
    """
    out = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
    if hasattr(out, "logits"):
        out = out.logits
    elif isinstance(out, (tuple, list)):
        out = out[0]
    return out


@dataclass(frozen=True)
class Split:
    """One data split: model inputs and integer class labels, row-aligned."""

    inputs: Inputs
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.labels.dim() != 1:
            raise TaskError(
                f"labels must be 1-D class indices, got shape {tuple(self.labels.shape)}"
            )
        n = _rows(self.inputs)
        if n != int(self.labels.shape[0]):
            raise TaskError(f"inputs have {n} rows but labels have {int(self.labels.shape[0])}")
        if n == 0:
            raise TaskError("a data split is empty")

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose arg-max logit is the label."""
    return float((logits.argmax(dim=-1) == labels).float().mean().item())


def _hash_tensor(h: Any, name: str, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def _hash_inputs(h: Any, name: str, inputs: Inputs) -> None:
    if isinstance(inputs, Mapping):
        for k in sorted(inputs):
            _hash_tensor(h, f"{name}.{k}", inputs[k])
    else:
        _hash_tensor(h, name, inputs)


@dataclass(eq=False)
class Task:
    """What a trial compresses and how it is judged.

    A trial may assume: ``teacher`` is trained and in eval mode; ``train`` is the only
    split it may fit on; ``val`` ranks trials; ``test`` is only reported. Latency is
    measured on ``latency_inputs`` (``latency_batch_size`` rows of ``val``) with
    ``threads`` intra-op threads. The task must be picklable (it is shipped to Ray
    workers), so callables must be module-level functions or cloudpickle-able.

    Attributes:
        name: Identifies the task in recipes and studies (e.g. ``"digits"``).
        teacher: The trained, uncompressed model.
        train, val, test: Data splits; the trial fits on ``train`` only.
        num_classes: Number of classes; output layers of this width are never pruned.
        metric: ``metric(logits, labels) -> float``, higher is better (default accuracy).
        latency_batch_size: Rows per forward pass when measuring latency.
        finetune_epochs: Distillation fine-tune length per trial.
        threads: Intra-op threads for training and measurement (and CPUs per trial).
        ignored_layers: Optional ``f(model) -> modules`` never to prune; default: every
            ``Linear``/``Conv`` whose output width equals ``num_classes``.
        space_preset: Name of the ``spaces`` preset a search uses when it is given no
            space (the operators that apply depend on the model: ``"transformer"`` for
            Hugging Face encoders).
        spec: Keyword arguments that rebuild this task through ``objectives.tasks``
            (built-in tasks only); recorded in recipes for the CLI.
    """

    name: str
    teacher: nn.Module
    train: Split
    val: Split
    test: Split
    num_classes: int
    metric: Callable[[torch.Tensor, torch.Tensor], float] = accuracy
    latency_batch_size: int = 64
    finetune_epochs: int = 5
    threads: int = 1
    ignored_layers: Callable[[nn.Module], list[nn.Module]] | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    space_preset: str = "default"

    def __post_init__(self) -> None:
        if not isinstance(self.teacher, nn.Module):
            raise TaskError(f"teacher must be a torch.nn.Module, got {type(self.teacher).__name__}")
        for attr in ("num_classes", "latency_batch_size", "finetune_epochs", "threads"):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TaskError(f"Task.{attr} must be a positive integer, got {v!r}")
        for split_name in ("train", "val", "test"):
            split = getattr(self, split_name)
            if not isinstance(split, Split):
                raise TaskError(f"Task.{split_name} must be a Split, got {type(split).__name__}")
            lo, hi = int(split.labels.min()), int(split.labels.max())
            if lo < 0 or hi >= self.num_classes:
                raise TaskError(
                    f"Task.{split_name} has labels in [{lo}, {hi}], "
                    f"outside [0, {self.num_classes - 1}] for num_classes={self.num_classes}"
                )
        self.teacher.eval()

    @property
    def latency_inputs(self) -> Inputs:
        """``latency_batch_size`` rows of ``val`` (repeated if ``val`` is smaller)."""
        n = len(self.val)
        idx = torch.arange(self.latency_batch_size) % n
        return take(self.val.inputs, idx)

    @property
    def calibration_inputs(self) -> Inputs:
        """Up to ``CALIBRATION_ROWS`` rows of ``train``: what static quantization observes.

        Activation ranges are calibrated on training data only (never on ``val`` or
        ``test``); the rows are the first ones, so calibration is deterministic.
        """
        return take(self.train.inputs, slice(0, min(CALIBRATION_ROWS, len(self.train))))

    @property
    def example_inputs(self) -> Inputs:
        """Two rows of ``val``: enough to trace the model's graph for pruning."""
        return take(self.val.inputs, slice(0, min(2, len(self.val))))

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 over the teacher's weights, the data and the measurement settings.

        Two tasks with equal fingerprints give equal trials for equal configs and seeds;
        a recipe refuses to apply to a task with another fingerprint.
        """
        h = hashlib.sha256()
        h.update(
            f"{self.name}|{self.num_classes}|{self.latency_batch_size}|"
            f"{self.finetune_epochs}|{self.threads}".encode()
        )
        for k, v in sorted(self.teacher.state_dict().items()):
            if isinstance(v, torch.Tensor):
                _hash_tensor(h, k, v)
        for split_name in ("train", "val", "test"):
            split: Split = getattr(self, split_name)
            _hash_inputs(h, split_name, split.inputs)
            _hash_tensor(h, f"{split_name}.labels", split.labels)
        return h.hexdigest()[:16]

    def output_layers(self, model: nn.Module) -> list[nn.Module]:
        """Modules of ``model`` that structured pruning must leave alone."""
        if self.ignored_layers is not None:
            return list(self.ignored_layers(model))
        out: list[nn.Module] = []
        for m in model.modules():
            if isinstance(m, nn.Linear) and m.out_features == self.num_classes:
                out.append(m)
            elif isinstance(m, nn.modules.conv._ConvNd) and m.out_channels == self.num_classes:
                out.append(m)
        return out
