"""Wall-clock latency of one forward pass, timed alone on the machine.

Latency contract: the median over ``repeats`` (≥ 30) samples of the wall-clock time of
one forward pass of the final artifact, after ``warmup`` untimed passes, with a fixed
intra-op thread count, in ``torch.inference_mode``. A sample times ``inner`` back-to-back
passes and divides by ``inner``, where ``inner`` is calibrated so a sample lasts at least
``min_sample_ms`` — so sub-millisecond models are not dominated by timer noise. On CUDA
samples are timed with CUDA events (recorded on the stream, synchronised before reading).
Timing holds the machine's measurement lock exclusively (see ``MeasurementLock``).
Several models can be timed in one measurement with their samples interleaved
(``measure_latencies``, ``measure_decode_latencies``): each is warmed up and calibrated
on its own, then one sample of each is taken in turn — how a trial times its artifact
beside the teacher.

Language models are also timed the way their users read latency
(``measure_decode_latency``): milliseconds per generated token with the KV cache — an
untimed prefill of the prompt, then ``tokens`` timed greedy steps of one token each,
divided by ``tokens`` — the median over ``repeats`` such samples.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from objectives._errors import TaskError
from objectives._task import Inputs, forward, to_device
from objectives.measure._lock import measuring

MIN_REPEATS = 30


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one forward pass, in milliseconds."""

    median_ms: float
    p90_ms: float
    cv: float
    repeats: int
    inner: int
    threads: int
    batch_size: int
    device: str


def _stats(
    samples: list[float], *, inner: int, threads: int, batch_size: int, device: torch.device
) -> LatencyStats:
    """The ``LatencyStats`` of ``samples`` (ms): median, 90th percentile (the sample at
    ``int(0.9 · n)`` of the sorted samples), population coefficient of variation."""
    ordered = sorted(samples)
    mean = statistics.fmean(ordered)
    return LatencyStats(
        median_ms=statistics.median(ordered),
        p90_ms=ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        cv=statistics.pstdev(ordered) / mean if mean > 0 else 0.0,
        repeats=len(ordered),
        inner=inner,
        threads=threads,
        batch_size=batch_size,
        device=str(device),
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward_sampler(
    model: nn.Module, x: Inputs, dev: torch.device, warmup: int, min_sample_ms: float
) -> tuple[Callable[[], float], int]:
    """Warm ``model`` up on ``x``; return a function timing one sample (ms per pass) and
    the passes per sample, ``inner``, calibrated so a sample lasts ``min_sample_ms``."""
    model.eval()
    for _ in range(max(warmup, 1)):
        forward(model, x)
    _sync(dev)
    t0 = time.perf_counter()
    forward(model, x)
    _sync(dev)
    one = max(time.perf_counter() - t0, 1e-7)
    inner = int(min(max(1, (min_sample_ms / 1000.0) // one + 1), 1000))

    def sample() -> float:
        if dev.type == "cuda":
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            for _ in range(inner):
                forward(model, x)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / inner
        t0 = time.perf_counter()
        for _ in range(inner):
            forward(model, x)
        return (time.perf_counter() - t0) * 1000.0 / inner

    return sample, inner


def _interleaved(samplers: Sequence[Callable[[], float]], repeats: int) -> list[list[float]]:
    """``repeats`` samples of each sampler, taken in turn (A, B, A, B, ...)."""
    samples: list[list[float]] = [[] for _ in samplers]
    for _ in range(repeats):
        for out, sample in zip(samples, samplers, strict=True):
            out.append(sample())
    return samples


def _rows(x: Inputs) -> int:
    return int(next(iter(x.values())).shape[0] if isinstance(x, dict) else x.shape[0])


@torch.inference_mode()
def measure_latency(
    model: nn.Module,
    inputs: Inputs,
    *,
    threads: int = 1,
    device: torch.device | str = "cpu",
    repeats: int = MIN_REPEATS,
    warmup: int = 5,
    min_sample_ms: float = 2.0,
) -> LatencyStats:
    """Measure the forward latency of ``model`` on ``inputs`` (see the module contract)."""
    return measure_latencies(
        [(model, device)], inputs, threads=threads, repeats=repeats, warmup=warmup,
        min_sample_ms=min_sample_ms,
    )[0]


@torch.inference_mode()
def measure_latencies(
    models: Sequence[tuple[nn.Module, torch.device | str]],
    inputs: Inputs,
    *,
    threads: int = 1,
    repeats: int = MIN_REPEATS,
    warmup: int = 5,
    min_sample_ms: float = 2.0,
) -> list[LatencyStats]:
    """``measure_latency`` of several ``(model, device)`` pairs, their samples interleaved.

    Each model is warmed up and calibrated on its own; then one sample of each is taken
    in turn, ``repeats`` times. A shared CPU's speed drifts and switches between regimes
    (``python -m benchmarks --only noise``); samples a few milliseconds apart see the
    same regime, so the models' medians are compared under the same conditions — a
    trial times its artifact this way beside the teacher (``task_latency``'s
    ``reference``).
    """
    return _measure_interleaved(
        models, inputs, threads=threads, repeats=repeats,
        prepare=lambda model, x, dev: _forward_sampler(model, x, dev, warmup, min_sample_ms),
    )


def _measure_interleaved(
    models: Sequence[tuple[nn.Module, torch.device | str]],
    inputs: Inputs,
    *,
    threads: int,
    repeats: int,
    prepare: Callable[[nn.Module, Inputs, torch.device], tuple[Callable[[], float], int]],
) -> list[LatencyStats]:
    """Under the measurement lock and ``threads``: ``prepare`` each model on ``inputs``
    moved to its device (a sampler and its passes per sample), then ``repeats`` samples
    of each, interleaved (``_interleaved``)."""
    repeats = max(int(repeats), MIN_REPEATS)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with measuring():
            prepared = []
            for model, device in models:
                dev = torch.device(device)
                x = to_device(inputs, dev)
                sample, inner = prepare(model, x, dev)
                prepared.append((sample, inner, dev, _rows(x)))
            samples = _interleaved([p[0] for p in prepared], repeats)
    finally:
        torch.set_num_threads(previous_threads)
    return [
        _stats(s, inner=inner, threads=threads, batch_size=rows, device=dev)
        for s, (_, inner, dev, rows) in zip(samples, prepared, strict=True)
    ]


def _cache_kwarg(model: nn.Module) -> str:
    """The keyword a causal LM's ``forward`` takes its KV cache by: ``cache`` in
    transformers ≥ 5.2x (``past_key_values`` is deprecated there, removed in 5.40),
    ``past_key_values`` before and in models that never renamed it."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def _returned_cache(out: object) -> object | None:
    """The KV cache a causal LM returned, under its new (``cache``) or old name."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def _decode_sampler(
    model: nn.Module, x: Inputs, dev: torch.device, tokens: int, warmup: int
) -> Callable[[], float]:
    """Warm ``model`` up on the prompt ``x`` (a mapping with ``input_ids``); return a
    function timing one decode sample (ms per token)."""
    cache_kwarg = _cache_kwarg(model)
    model.eval()

    def sample() -> float:
        ids = x["input_ids"]
        mask = x.get("attention_mask", torch.ones_like(ids))
        out = model(input_ids=ids, attention_mask=mask, use_cache=True)
        cache = _returned_cache(out)
        if cache is None:
            raise TaskError(
                f"{type(model).__name__} returned no KV cache: decode latency needs a "
                "causal LM with a KV cache; use latency_mode='prefill' or 'forward'"
            )
        nxt = out.logits[:, -1:].argmax(dim=-1)
        ones = torch.ones_like(nxt)
        _sync(dev)
        t0 = time.perf_counter()
        for _ in range(tokens):
            mask = torch.cat([mask, ones], dim=1)
            out = model(input_ids=nxt, attention_mask=mask, use_cache=True,
                        **{cache_kwarg: cache})
            cache = _returned_cache(out)
            nxt = out.logits[:, -1:].argmax(dim=-1)
        _sync(dev)
        return (time.perf_counter() - t0) * 1000.0 / tokens

    for _ in range(max(warmup, 1)):
        sample()
    return sample


@torch.inference_mode()
def measure_decode_latency(
    model: nn.Module,
    prompt: Inputs,
    *,
    tokens: int = 16,
    threads: int = 1,
    device: torch.device | str = "cpu",
    repeats: int = MIN_REPEATS,
    warmup: int = 2,
) -> LatencyStats:
    """Milliseconds per generated token of a causal LM with its KV cache.

    Args:
        model: A Hugging Face-style causal LM: called with ``input_ids`` (and
            ``attention_mask``, ``use_cache`` and its KV cache as ``cache`` or
            ``past_key_values``, whichever its ``forward`` declares), returning
            ``logits`` and that cache.
        prompt: ``{"input_ids": [batch, prompt_len], "attention_mask": ...}``; the batch
            size is the decode batch size.
        tokens: Greedy steps timed per sample (each feeds one token per sequence).

    Raises:
        TaskError: the model returns no KV cache (it cannot decode incrementally).
    """
    return measure_decode_latencies(
        [(model, device)], prompt, tokens=tokens, threads=threads, repeats=repeats,
        warmup=warmup,
    )[0]


@torch.inference_mode()
def measure_decode_latencies(
    models: Sequence[tuple[nn.Module, torch.device | str]],
    prompt: Inputs,
    *,
    tokens: int = 16,
    threads: int = 1,
    repeats: int = MIN_REPEATS,
    warmup: int = 2,
) -> list[LatencyStats]:
    """``measure_decode_latency`` of several ``(model, device)`` pairs, their samples
    interleaved (one of each in turn, as ``measure_latencies``).

    Raises:
        TaskError: a model returns no KV cache (it cannot decode incrementally).
    """
    if not isinstance(prompt, dict) or "input_ids" not in prompt:
        raise TaskError("decode latency needs a prompt mapping with input_ids")
    return _measure_interleaved(
        models, prompt, threads=threads, repeats=repeats,
        prepare=lambda model, x, dev: (_decode_sampler(model, x, dev, tokens, warmup), tokens),
    )
