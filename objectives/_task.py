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

IGNORE_INDEX = -100
"""A token-level label that is not counted (padding, the last position of a sequence)."""

LATENCY_MODES = ("forward", "decode", "prefill")
"""What a task's latency objective times (see ``Task.latency_mode``)."""


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
    """One data split: model inputs and integer labels, row-aligned.

    ``labels`` is 1-D (one class per row: classifiers) or 2-D ``[rows, tokens]`` (one class
    per position: language models, where ``labels[:, t]`` is the token that follows
    position ``t`` and ``IGNORE_INDEX`` marks positions that are not counted).
    """

    inputs: Inputs
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.labels.dim() not in (1, 2):
            raise TaskError(
                "labels must be 1-D class indices or 2-D [rows, tokens] token labels, got "
                f"shape {tuple(self.labels.shape)}"
            )
        n = _rows(self.inputs)
        if n != int(self.labels.shape[0]):
            raise TaskError(f"inputs have {n} rows but labels have {int(self.labels.shape[0])}")
        if n == 0:
            raise TaskError("a data split is empty")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def token_level(self) -> bool:
        """Whether labels are per position (``[rows, tokens]``) rather than per row."""
        return self.labels.dim() == 2


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of counted labels whose arg-max logit is the label.

    Per row for 1-D labels; per position for token labels (``logits`` ``[rows, tokens,
    classes]``), where ``IGNORE_INDEX`` positions are not counted — next-token accuracy.
    """
    hits = logits.argmax(dim=-1) == labels
    counted = labels != IGNORE_INDEX
    n = int(counted.sum())
    return float((hits & counted).sum().item()) / n if n else float("nan")


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
        latency_mode: What the latency objective times. ``"forward"``: one forward pass
            over ``latency_inputs``. Language models (token labels) may choose
            ``"decode"``: milliseconds per generated token with the KV cache, for
            ``decode_batch_size`` prompts of ``decode_prompt_length`` tokens, over
            ``decode_tokens`` greedy steps; or ``"prefill"``: one forward pass over
            ``latency_inputs`` (``latency_batch_size`` rows × the sequence length). In
            either LM mode both are measured and recorded; the chosen one is the objective.
        decode_batch_size, decode_prompt_length, decode_tokens: The decode measurement.
        confirm: Optional confirmation rows, never ranked on: every trial also reports
            its accuracy there, paired with the teacher's (``confirm_delta`` ± se), and
            exporting "within N points" chooses among points that hold on them.
        logit_cache_topk: Token-level tasks: cache only the teacher's ``k`` largest logits
            per position for distillation (``None``: full logits when they fit in
            ``FULL_LOGITS_LIMIT`` bytes, else the top 64).
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
    latency_mode: str = "forward"
    decode_batch_size: int = 1
    decode_prompt_length: int = 32
    decode_tokens: int = 16
    logit_cache_topk: int | None = None
    confirm: Split | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.teacher, nn.Module):
            raise TaskError(f"teacher must be a torch.nn.Module, got {type(self.teacher).__name__}")
        if self.latency_mode not in LATENCY_MODES:
            raise TaskError(
                f"Task.latency_mode {self.latency_mode!r} is not supported; allowed: "
                + ", ".join(LATENCY_MODES)
            )
        if self.latency_mode != "forward" and not self.val.token_level:
            raise TaskError(
                f"Task.latency_mode {self.latency_mode!r} times language-model generation and "
                "needs token labels ([rows, tokens]); use 'forward' for classifiers"
            )
        if self.logit_cache_topk is not None and (
            isinstance(self.logit_cache_topk, bool)
            or not isinstance(self.logit_cache_topk, int)
            or self.logit_cache_topk < 1
        ):
            raise TaskError(
                f"Task.logit_cache_topk must be a positive integer or None, got "
                f"{self.logit_cache_topk!r}"
            )
        for attr in ("num_classes", "latency_batch_size", "finetune_epochs", "threads",
                     "decode_batch_size", "decode_prompt_length", "decode_tokens"):
            v = getattr(self, attr)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TaskError(f"Task.{attr} must be a positive integer, got {v!r}")
        for split_name in ("train", "val", "test", "confirm"):
            split = getattr(self, split_name)
            if split is None and split_name == "confirm":
                continue
            if not isinstance(split, Split):
                raise TaskError(f"Task.{split_name} must be a Split, got {type(split).__name__}")
            counted = split.labels[split.labels != IGNORE_INDEX]
            if counted.numel() == 0:
                raise TaskError(f"Task.{split_name} has no counted labels (all are ignored)")
            lo, hi = int(counted.min()), int(counted.max())
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
    def decode_prompt(self) -> Inputs:
        """The prompts decode latency starts from: ``decode_batch_size`` rows of ``val``
        (repeated if needed), cut to their first ``decode_prompt_length`` positions."""
        n = len(self.val)
        rows = take(self.val.inputs, torch.arange(self.decode_batch_size) % n)
        if not isinstance(rows, Mapping):
            return rows[:, : self.decode_prompt_length]
        return {k: v[:, : self.decode_prompt_length] for k, v in rows.items()}

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
        if self.latency_mode != "forward":
            h.update(
                f"|{self.latency_mode}|{self.decode_batch_size}|{self.decode_prompt_length}|"
                f"{self.decode_tokens}".encode()
            )
        for k, v in sorted(self.teacher.state_dict().items()):
            if isinstance(v, torch.Tensor):
                _hash_tensor(h, k, v)
        for split_name in ("train", "val", "test"):
            split: Split = getattr(self, split_name)
            _hash_inputs(h, split_name, split.inputs)
            _hash_tensor(h, f"{split_name}.labels", split.labels)
        if self.confirm is not None:
            _hash_inputs(h, "confirm", self.confirm.inputs)
            _hash_tensor(h, "confirm.labels", self.confirm.labels)
        return h.hexdigest()[:16]

    def output_layers(self, model: nn.Module) -> list[nn.Module]:
        """Modules of ``model`` that structured pruning must leave alone."""
        if self.ignored_layers is not None:
            return list(self.ignored_layers(model))
        if self.val.token_level:
            return []  # a language model's output is its vocabulary: pruning never cuts it
        out: list[nn.Module] = []
        for m in model.modules():
            if isinstance(m, nn.Linear) and m.out_features == self.num_classes:
                out.append(m)
            elif isinstance(m, nn.modules.conv._ConvNd) and m.out_channels == self.num_classes:
                out.append(m)
        return out
