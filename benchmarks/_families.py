"""Every model family, really compressed: size, latency and accuracy per operator.

For each family in ``tests/objectives/families.py`` (residual CNN with projection
shortcut, depthwise CNN, LSTM, GRU, GPT-2 classifier, Llama classifier with grouped-query
attention — small models trained here in seconds on learnable synthetic data), four
trials through the public API (``objectives.compress`` with the trial's distillation
fine-tune): fp32, int8, int4, and prune 0.5 + int8 (``prune_ratio`` for CNNs/RNNs,
``ffn_prune_ratio`` for the transformers). Size is the bytes of the file a trial writes
(``save_weights``); accuracy is on the validation split the fine-tune never saw (test
beside it); latency is measured side by side: every artifact is timed in interleaved
rounds (round r times each artifact once, ``ROUNDS`` rounds) and the median of the
per-round medians is reported, so machine noise hits all rows alike. A setting the
pre-flight check refuses (``objectives.check_setting``) is listed with its reason.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
from pathlib import Path

from benchmarks._report import machine, table, write_section
from objectives import (
    MODEL_FILE,
    CompressionConfig,
    check_setting,
    compress,
    evaluate_metric,
    measure_latency,
    quantization_coverage,
    save_weights,
)

ROUNDS = 5
LATENCY_BATCH = 32


def _configs(family: str) -> list[tuple[str, dict[str, object]]]:
    prune = "ffn_prune_ratio" if family in ("gpt2", "llama") else "prune_ratio"
    return [
        ("fp32", {}),
        ("int8", {"quant_bits": 8}),
        ("int4", {"quant_bits": 4}),
        (f"{prune} 0.5 + int8", {prune: 0.5, "quant_bits": 8}),
    ]


def run() -> None:
    from tests.objectives.families import FAMILIES

    rows: list[list[object]] = []
    for family, build in FAMILIES.items():
        task = dataclasses.replace(build(), latency_batch_size=LATENCY_BATCH, finetune_epochs=2)
        built: list[tuple[str, object, float, float, int, str]] = []
        refused: list[tuple[str, str]] = []
        with tempfile.TemporaryDirectory() as d:
            for label, settings in _configs(family):
                reason = next(
                    (r for k, v in settings.items() if (r := check_setting(task, k, v))), None
                )
                if reason is not None:
                    refused.append((label, reason))
                    continue
                config = CompressionConfig(**settings)
                model, _ = compress(task, config, seed=0)
                size = save_weights(model, Path(d) / MODEL_FILE)
                acc = evaluate_metric(model, task.val, task)
                test = evaluate_metric(model, task.test, task)
                cov = quantization_coverage(model, config.quant_bits).describe()
                built.append((label, model, acc, test, size, cov))
                print(family, label, f"val {acc:.3f} size {size}", cov, flush=True)
            per_round: dict[str, list[float]] = {label: [] for label, *_ in built}
            for _ in range(ROUNDS):
                for label, model, *_ in built:
                    per_round[label].append(
                        measure_latency(model, task.latency_inputs, threads=task.threads).median_ms
                    )
        latency = {k: statistics.median(v) for k, v in per_round.items()}
        base_label, _, base_acc, _, base_size, _ = built[0]
        for label, _, acc, test, size, cov in built:
            rows.append([
                family, label, f"{base_size / size:.2f}x",
                f"{latency[base_label] / latency[label]:.2f}x",
                f"{latency[label]:.2f}", f"{100 * (acc - base_acc):+.1f}", f"{test:.3f}", cov,
            ])
        for label, reason in refused:
            rows.append([family, label, "refused", "", "", "", "", reason])
    body = "\n".join([
        "## Model families: every operator really applied",
        "",
        f"`python -m benchmarks --only families`. Machine: {machine()}. One thread, latency "
        f"batch {LATENCY_BATCH}, median of {ROUNDS} interleaved rounds (each the median of "
        "≥ 30 timed runs); every trial fine-tunes 2 epochs with distillation from its fp32 "
        "teacher. Ratios are against the fp32 trial of the same family in the same run. "
        "Δ val is in accuracy points against the fp32 trial; models and data are built "
        "from `tests/objectives/families.py` (small, so absolute latencies are small).",
        "",
        table(["family", "trial", "smaller", "faster", "latency ms", "Δ val pts", "test acc",
               "coverage"], rows),
    ])
    write_section("families", body)
