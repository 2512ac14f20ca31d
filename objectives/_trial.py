"""One trial: structured pruning → distillation fine-tune → quantization → measurement."""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from objectives._config import CompressionConfig
from objectives._coverage import quantization_coverage
from objectives._early_stop import EarlyStopping
from objectives._errors import TaskError
from objectives._serialize import count_parameters, load_weights, save_weights
from objectives._task import Task
from objectives._task import accuracy as accuracy_metric
from objectives.measure._hardware import describe_hardware
from objectives.measure._latency import (
    LatencyStats,
    measure_decode_latencies,
    measure_latencies,
)
from objectives.measure._lock import working
from objectives.measure._metric import evaluate_metric, evaluate_perplexity, row_outcomes
from objectives.measure._paired import paired_difference
from objectives.operators._allocation import (
    Allocation,
    LayerProfile,
    allocate,
    tag_origins,
)
from objectives.operators._distill import finetune
from objectives.operators._profile import student_layer_latency, task_profile
from objectives.operators._quantize import quantize
from objectives.operators._structure import applied_pruning, restructure

MODEL_FILE = "model.safetensors"


@dataclass(frozen=True)
class TrialResult:
    """What one trial measured.

    Attributes:
        accuracy: ``task.metric`` on the validation split (never trained on) — ranked on.
        test_accuracy: ``task.metric`` on the test split — reported only.
        latency_ms: Median forward latency of the final artifact (see ``measure_latency``).
        size_bytes: Bytes of the safetensors file the trial wrote.
        latency: Full latency statistics.
        num_parameters: Weight elements of the compressed model (``count_parameters``).
        params_before: Weight elements of the teacher, for comparison.
        quant_coverage: Share of the weight elements stored at the requested
            ``quant_bits`` or fewer (``objectives.quantization_coverage``; 1.0 at 32).
        uncovered_layers: Layer types whose weights stayed above ``quant_bits``.
        hardware: Where latency was measured (``objectives.describe_hardware``).
        latencies: Language models (``Task.latency_mode`` decode/prefill): both
            ``prefill_ms`` and ``decode_ms_per_token``; ``latency_ms`` is the chosen one.
            Empty for ``"forward"`` tasks.
        perplexity: Language models: validation perplexity (reported, not ranked on).
        accuracy_delta: Validation accuracy minus the teacher's, paired on the same rows
            (``objectives.measure._paired``); None when the task's metric is not
            ``objectives.accuracy`` (no per-row outcomes to pair) and for the teacher.
        accuracy_delta_se: Standard error of ``accuracy_delta`` over rows; ``inf`` with
            fewer than two rows (nothing shown), understated for language models (rows
            are windows of one token stream; see ``objectives.measure._paired``).
        confirm_accuracy, confirm_delta, confirm_delta_se: The same on ``task.confirm``
            (rows never ranked on); None without a confirmation split.
        layer_bits: With ``bit_budget``: the precision each Linear layer got.
        effective_bits: With ``bit_budget``: the stored bits per weight element of those
            layers (exact, from the bytes the file holds for them).
        layer_time_share: With ``bit_budget``: those layers' estimated time (the profile's
            per-layer timing table, scaled to the pruned shapes) as a fraction of theirs
            at fp32 — what ``latency_budget`` bounds.
        layers_removed: With ``depth_prune_ratio > 0``: decoder layers the student lost
            (``ceil(ratio · layers)``, see ``objectives.operators._ratio``).
        heads_kept: With ``attn_prune_ratio > 0`` on a Llama-family decoder: query heads
            left in every layer.
        timings: Seconds per phase (``prune_s``, ``finetune_s``, ``quantize_s``,
            ``measure_s``) and in total (``compute_s``).
        loss_history: Mean distillation loss per fine-tune epoch.
        epoch_accuracies: Validation metric after each epoch (with early stopping).
        stopped: Why the trial was stopped early, or None if it ran to the end; a
            stopped trial has no final artifact (``latency`` is None).
        reference_latency_ms: The teacher's latency (the task's latency objective, on
            the trial's device), its samples taken alternately with the artifact's in
            the same measurement; ``latency_ms / reference_latency_ms`` is the artifact's
            latency relative to the teacher under the same conditions. None for the
            baseline and for stopped trials.
    """

    accuracy: float
    test_accuracy: float
    latency_ms: float
    size_bytes: int
    latency: LatencyStats | None
    num_parameters: int
    timings: dict[str, float] = field(default_factory=dict)
    loss_history: list[float] = field(default_factory=list)
    epoch_accuracies: list[float] = field(default_factory=list)
    stopped: str | None = None
    params_before: int = 0
    quant_coverage: float | None = None
    uncovered_layers: tuple[str, ...] = ()
    hardware: str = ""
    latencies: dict[str, float] = field(default_factory=dict)
    perplexity: float | None = None
    accuracy_delta: float | None = None
    accuracy_delta_se: float | None = None
    confirm_accuracy: float | None = None
    confirm_delta: float | None = None
    confirm_delta_se: float | None = None
    layer_bits: dict[str, int] | None = None
    effective_bits: float | None = None
    layer_time_share: float | None = None
    layers_removed: int | None = None
    heads_kept: int | None = None
    reference_latency_ms: float | None = None

    def metrics(self) -> dict[str, float]:
        """The three objectives plus test accuracy, as plain floats."""
        return {
            "accuracy": self.accuracy,
            "latency_ms": self.latency_ms,
            "size_bytes": float(self.size_bytes),
            "test_accuracy": self.test_accuracy,
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-serialisable."""
        return asdict(self)


@contextmanager
def _threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _Clock:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    def total(self, t0: float) -> dict[str, float]:
        """The phase timings plus ``compute_s``, the seconds since ``t0``."""
        return {**self.timings, "compute_s": time.perf_counter() - t0}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[f"{name}_s"] = self.timings.get(f"{name}_s", 0.0) + (
                time.perf_counter() - t0
            )


def _final_device(config: CompressionConfig, device: torch.device | str) -> torch.device:
    if config.quant_bits in (8, 4) or config.bit_budget > 0:
        return torch.device("cpu")
    return torch.device(device)


def pruned_copy(task: Task, config: CompressionConfig) -> nn.Module:
    """A deep copy of the teacher with the config's structural compression applied.

    Channels (``prune_ratio``), transformer heads/FFN neurons, vocabulary, int8 embedding
    tables — the student a trial fine-tunes, before quantization.

    Raises:
        TaskError: a setting does not apply to this model or task.
    """
    student = tag_origins(copy.deepcopy(task.teacher).cpu().eval())
    return restructure(student, task, config)


def precisions(
    task: Task,
    config: CompressionConfig,
    student: nn.Module,
    profile: LayerProfile | None = None,
) -> Allocation | None:
    """The per-layer precisions of the pruned ``student`` under ``config.bit_budget``
    (None when the config has no budget).

    ``config.layer_bits`` (a recipe's) is used as given; otherwise the allocation is
    computed from ``profile`` (default: ``task_profile(task, base=config.quant_bits)``,
    measured once per task and base) and, where pruning changed a layer's shape, the
    student's own per-layer timing table (``student_layer_latency``: timed in the
    student, each structure once per machine; it takes the measurement lock, so call
    this outside a shared hold).

    Raises:
        TaskError: ``profile`` was measured on another base than ``config.quant_bits``.
    """
    if config.bit_budget <= 0:
        return None
    if config.layer_bits is not None:
        from objectives.operators._allocation import layer_costs, tied_layers

        costs = layer_costs(student, list(config.layer_bits), config.quant_bits)
        tied = set(tied_layers(student))  # a tied layer adds bytes, not elements
        weights = sum(student.get_submodule(n).weight.numel() for n in config.layer_bits
                      if n not in tied)
        return Allocation(
            layer_bits=dict(config.layer_bits),
            weight_bytes=sum(costs[n][int(b)] for n, b in config.layer_bits.items()),
            weights=weights,
            sensitivity=float("nan"),
        )
    if profile is not None and profile.base != config.quant_bits:
        raise TaskError(
            f"the layer profile was measured on a base of {profile.base} bits and this "
            f"config allocates on quant_bits={config.quant_bits}; pass that base's profile "
            f"(task_profile(task, base={config.quant_bits}))"
        )
    profile = profile or task_profile(task, base=config.quant_bits)
    return allocate(student, profile, config.bit_budget, config.latency_budget,
                    config.latency_saving,
                    latency_ms=student_layer_latency(student, task, profile))


def _quantized(
    student: nn.Module,
    task: Task,
    config: CompressionConfig,
    allocation: Allocation | None,
    device: torch.device | str,
) -> nn.Module:
    """``student`` quantized as ``config`` (and its allocation) says."""
    return quantize(
        student, config.quant_bits, device=device, edge_bits=config.edge_bits,
        calibration=task.calibration_inputs,
        layer_bits=None if allocation is None else allocation.layer_bits,
    )


def compress(
    task: Task,
    config: CompressionConfig,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    clock: _Clock | None = None,
    after_prune: Callable[[nn.Module], None] | None = None,
    on_epoch: Callable[[int, nn.Module], bool] | None = None,
    layer_profile: LayerProfile | None = None,
    on_allocation: Callable[[Allocation], None] | None = None,
) -> tuple[nn.Module | None, list[float]]:
    """Compress the task's teacher with ``config``; return the final model and loss history.

    Deterministic for a given task, config, seed, device and ``task.threads`` — an
    allocation on a pruned student also for the per-layer timings measured on this
    machine, which are cached per student structure, so repeats on one machine agree; the
    hooks observe the student but must not change it. ``after_prune`` sees the pruned
    student before fine-tuning; ``on_epoch`` (see ``finetune``) may stop the fine-tune, in which
    case the returned model is ``None``. With ``config.bit_budget`` the per-layer
    precisions are allocated on the pruned student (``precisions``; ``layer_profile`` is
    the teacher's sensitivity, default ``task_profile(task)``) and passed to
    ``on_allocation``.
    """
    clock = clock or _Clock()
    torch.manual_seed(seed)
    stopped = False

    def epoch_hook(epoch: int, student: nn.Module) -> bool:
        nonlocal stopped
        stopped = bool(on_epoch(epoch, student)) if on_epoch is not None else False
        return stopped

    with _threads(task.threads):
        # Every phase holds the measurement lock shared (as training steps and evaluation
        # batches do), so another trial's latency timing never runs beside it.
        with clock.phase("prune"):
            with working():
                student = pruned_copy(task, config)
            # Outside the shared hold: the allocation times the pruned layers under
            # the measurement lock's exclusive hold (student_layer_latency).
            allocation = precisions(task, config, student, layer_profile)
        if allocation is not None and on_allocation is not None:
            on_allocation(allocation)
        if after_prune is not None:
            after_prune(student)
        with clock.phase("finetune"):
            history = finetune(
                student, task, config, seed=seed, device=device,
                on_epoch=epoch_hook if on_epoch is not None else None,
            )
        if stopped:
            return None, history
        with clock.phase("quantize"), working():
            final = _quantized(
                student.to(_final_device(config, device)), task, config, allocation, device
            )
    return final, history


_TEACHER_OUTCOMES: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}


def teacher_outcomes(task: Task, split: str = "val") -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's per-row ``(hits, counts)`` on ``task.<split>`` (``"val"`` or
    ``"confirm"``), computed once per task and process."""
    key = (task.fingerprint, split)
    if key not in _TEACHER_OUTCOMES:
        with _threads(task.threads):
            _TEACHER_OUTCOMES[key] = row_outcomes(task.teacher, getattr(task, split))
    return _TEACHER_OUTCOMES[key]


def task_latency(
    model: nn.Module,
    task: Task,
    *,
    device: torch.device | str = "cpu",
    reference: tuple[nn.Module, torch.device | str] | None = None,
) -> tuple[LatencyStats, dict[str, float]]:
    """The latency objective of ``model`` as ``task.latency_mode`` defines it.

    With ``reference`` (a model and its device, e.g. the teacher), each figure's samples
    alternate with the reference's (``measure_latencies``), and the figures hold
    ``reference_ms``: the reference's median of the chosen figure, taken beside it.

    Returns the chosen statistics and, for language-model modes, both figures
    (``prefill_ms`` over ``latency_inputs``, ``decode_ms_per_token`` from
    ``decode_prompt``); ``{}`` for ``"forward"`` without a reference.
    """
    pairs = [(model, device)] + ([] if reference is None else [reference])
    forward_stats = measure_latencies(pairs, task.latency_inputs, threads=task.threads)
    figures: dict[str, float] = {}
    chosen = forward_stats
    if task.latency_mode != "forward":
        decode = measure_decode_latencies(
            pairs, task.decode_prompt, tokens=task.decode_tokens, threads=task.threads
        )
        figures = {"prefill_ms": forward_stats[0].median_ms,
                   "decode_ms_per_token": decode[0].median_ms}
        if task.latency_mode == "decode":
            chosen = decode
    if reference is not None:
        figures["reference_ms"] = chosen[1].median_ms
    return chosen[0], figures


def measure(
    model: nn.Module,
    task: Task,
    *,
    path: Path,
    device: torch.device | str = "cpu",
    metadata: dict[str, str] | None = None,
    paired: bool = True,
    reference: tuple[nn.Module, torch.device | str] | None = None,
) -> tuple[float, float, int, LatencyStats, dict[str, Any]]:
    """Write ``model`` to ``path`` and measure (val metric, test metric, bytes, latency,
    extras); extras hold ``latencies`` and ``perplexity`` for language models, with
    ``paired`` and the accuracy metric the paired difference to the teacher, and with
    ``reference`` (a model and its device) ``reference_latency_ms``: its latency timed
    interleaved with ``model``'s (``task_latency``)."""
    with working():
        size = save_weights(model, path, metadata=metadata)
    extras: dict[str, Any] = {}
    with _threads(task.threads):
        if paired and task.metric is accuracy_metric:
            hits, counts = row_outcomes(model, task.val, device=device)
            acc = float(hits.sum()) / float(counts.sum())
            difference = paired_difference(hits, teacher_outcomes(task, "val")[0], counts)
            extras["accuracy_delta"] = difference.delta
            extras["accuracy_delta_se"] = difference.se
            if task.confirm is not None:
                hits, counts = row_outcomes(model, task.confirm, device=device)
                extras["confirm_accuracy"] = float(hits.sum()) / float(counts.sum())
                confirm = paired_difference(hits, teacher_outcomes(task, "confirm")[0], counts)
                extras["confirm_delta"], extras["confirm_delta_se"] = confirm.delta, confirm.se
        else:
            acc = evaluate_metric(model, task.val, task, device=device)
            if task.confirm is not None and task.metric is accuracy_metric:  # the baseline
                hits, counts = row_outcomes(model, task.confirm, device=device)
                extras["confirm_accuracy"] = float(hits.sum()) / float(counts.sum())
        test_acc = evaluate_metric(model, task.test, task, device=device)
        if task.val.token_level:
            extras["perplexity"] = evaluate_perplexity(model, task.val, device=device)
    latency, extras["latencies"] = task_latency(model, task, device=device, reference=reference)
    if reference is not None:
        extras["reference_latency_ms"] = extras["latencies"].pop("reference_ms")
    return acc, test_acc, size, latency, extras


def evaluate(
    task: Task,
    config: CompressionConfig,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
    output_dir: str | Path | None = None,
    early_stopping: EarlyStopping | None = None,
    layer_profile: LayerProfile | None = None,
) -> TrialResult:
    """Run one full trial and measure it.

    The compressed weights are written to ``output_dir/model.safetensors`` (a temporary
    directory, removed afterwards, when ``output_dir`` is None); ``size_bytes`` is that
    file's size.

    With ``early_stopping``, the validation metric is measured after every fine-tune
    epoch, and — when there are finished trials to compare with — latency and size of the
    quantized pruned structure are measured before fine-tuning. A stopped trial returns
    a result with ``stopped`` set, the last epoch's validation metric as ``accuracy``,
    NaN test accuracy, and the pre-measured latency and size (NaN/0 when not measured).
    Early stopping does not change the weights of a trial that runs to the end.

    With ``config.bit_budget``, ``layer_profile`` is the teacher's per-layer sensitivity
    (a search measures it once and passes it; default: ``task_profile(task)``), and the
    result records the allocation (``layer_bits``, ``effective_bits``).

    Raises:
        TaskError: the model cannot be compressed this way.
        TrialFailed: the fine-tune diverged.
    """
    clock = _Clock()
    t0 = time.perf_counter()
    final_device = _final_device(config, device)
    accuracies: list[float] = []
    probe: dict[str, float] = {}
    reason: str | None = None
    chosen: list[Allocation] = []
    applied: dict[str, int] = {}

    def after_prune(student: nn.Module) -> None:
        applied.update(applied_pruning(task.teacher, student, config))
        if early_stopping is None or not early_stopping.finished:
            return
        with clock.phase("measure"), tempfile.TemporaryDirectory(prefix="slimsearch-probe-") as d:
            with working():
                model = _quantized(
                    copy.deepcopy(student).to(final_device), task, config,
                    chosen[0] if chosen else None, device,
                )
                probe["size_bytes"] = save_weights(model, Path(d) / MODEL_FILE)
            probe["latency_ms"] = task_latency(model, task, device=final_device)[0].median_ms

    def on_epoch(epoch: int, student: nn.Module) -> bool:
        nonlocal reason
        if early_stopping is None:  # the hook is only installed with a rule
            return False
        with clock.phase("measure"):
            accuracies.append(evaluate_metric(student, task.val, task, device=device))
        reason = early_stopping.reason(
            accuracies,
            task.finetune_epochs,
            probe.get("latency_ms"),
            None if "size_bytes" not in probe else int(probe["size_bytes"]),
        )
        return reason is not None

    model, history = compress(
        task, config, seed=seed, device=device, clock=clock, after_prune=after_prune,
        on_epoch=on_epoch if early_stopping is not None else None,
        layer_profile=layer_profile, on_allocation=chosen.append,
    )
    allocated: dict[str, Any] = {}
    if chosen:
        allocated = {"layer_bits": dict(chosen[0].layer_bits),
                     "effective_bits": chosen[0].effective_bits,
                     "layer_time_share": chosen[0].time_share}
    if model is None:
        timings = clock.total(t0)
        return TrialResult(
            accuracy=accuracies[-1],
            test_accuracy=float("nan"),
            latency_ms=probe.get("latency_ms", float("nan")),
            size_bytes=int(probe.get("size_bytes", 0)),
            latency=None,
            num_parameters=0,
            timings=timings,
            loss_history=history,
            epoch_accuracies=accuracies,
            stopped=reason,
            hardware=describe_hardware(final_device, task.threads),
            **allocated,
            **applied,
        )
    with tempfile.TemporaryDirectory(prefix="slimsearch-trial-") as tmp:
        out = Path(output_dir) if output_dir is not None else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        with clock.phase("measure"):
            # The teacher is timed beside the artifact, on the device the baseline was
            # measured on: the search reads the artifact's latency relative to it.
            acc, test_acc, size, latency, extras = measure(
                model, task, path=out / MODEL_FILE, device=final_device,
                reference=(_reference_teacher(task, device), device),
            )
    return _measured(model, acc, test_acc, size, latency, clock.total(t0), task=task,
                     bits=config.quant_bits, device=final_device, loss_history=history,
                     epoch_accuracies=accuracies, **allocated, **applied, **extras)


def _reference_teacher(task: Task, device: torch.device | str) -> nn.Module:
    """The teacher on ``device`` for timing beside a trial's artifact: ``task.teacher``
    itself where it already lives there (it is only run in inference mode), else a copy."""
    dev = torch.device(device)
    teacher = task.teacher
    here = next((p.device for p in teacher.parameters()), torch.device("cpu"))
    if here == dev or (here.type == dev.type == "cuda" and dev.index is None):
        return teacher.eval()
    return copy.deepcopy(teacher).to(dev).eval()


def evaluate_teacher(task: Task, *, device: torch.device | str = "cpu") -> TrialResult:
    """Measure the uncompressed teacher exactly as trials are measured (the baseline)."""
    clock = _Clock()
    t0 = time.perf_counter()
    teacher = copy.deepcopy(task.teacher).to(device).eval()
    with tempfile.TemporaryDirectory(prefix="slimsearch-baseline-") as tmp:
        with clock.phase("measure"):
            acc, test_acc, size, latency, extras = measure(
                teacher, task, path=Path(tmp) / MODEL_FILE, device=device, paired=False
            )
    return _measured(teacher, acc, test_acc, size, latency, clock.total(t0), task=task, bits=32,
                     device=device, **extras)


def _measured(
    model: nn.Module,
    acc: float,
    test_acc: float,
    size: int,
    latency: LatencyStats,
    timings: dict[str, float],
    *,
    task: Task,
    bits: int,
    device: torch.device | str,
    **extra: Any,
) -> TrialResult:
    """The ``TrialResult`` of a model that was measured to the end."""
    coverage = quantization_coverage(model, bits)
    return TrialResult(
        accuracy=acc,
        test_accuracy=test_acc,
        latency_ms=latency.median_ms,
        size_bytes=size,
        latency=latency,
        num_parameters=count_parameters(model),
        timings=timings,
        params_before=count_parameters(task.teacher),
        quant_coverage=coverage.fraction,
        uncovered_layers=coverage.uncovered,
        hardware=describe_hardware(device, task.threads),
        **extra,
    )


def skeleton(task: Task, config: CompressionConfig) -> nn.Module:
    """The compressed model's structure (pruned + quantized, weights not yet loaded)."""
    with _threads(task.threads):
        student = pruned_copy(task, config)
        return _quantized(student, task, config, precisions(task, config, student), "cpu")


def load_compressed(task: Task, config: CompressionConfig, path: str | Path) -> nn.Module:
    """Rebuild a compressed model from the teacher and a weights file written by a trial.

    Pruning is re-applied to the teacher (it is deterministic), the result quantized
    the same way, and the saved weights loaded into that structure.
    """
    return load_weights(skeleton(task, config), path)
