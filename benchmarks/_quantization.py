"""Latency and size of each precision, measured side by side in one run.

For each task's teacher (unpruned) and each precision: the file size of the weights and
the median forward latency (``objectives.measure_latency``) on this machine's CPU. The GPU
rows stay marked as not measured until a run on a GPU machine fills them.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

from benchmarks._report import machine, table, write_section
from objectives import MODEL_FILE, Task, measure_latency, quantize, save_weights

PRECISIONS = (
    ("fp32", 32, 0),
    ("bf16", 16, 0),
    ("int8 dynamic", 8, 0),
    ("int8, first/last fp32", 8, 32),
    ("int4 weight-only", 4, 0),
    ("int4, first/last int8", 4, 8),
)


def measure_task(task: Task, label: str) -> list[list[object]]:
    rows = []
    base_latency = base_size = None
    with tempfile.TemporaryDirectory() as d:
        for name, bits, edge in PRECISIONS:
            model = quantize(copy.deepcopy(task.teacher), bits, edge_bits=edge)
            size = save_weights(model, Path(d) / MODEL_FILE)
            lat = measure_latency(model, task.latency_inputs, threads=task.threads)
            base_latency = base_latency or lat.median_ms
            base_size = base_size or size
            speedup = base_latency / lat.median_ms
            rows.append([label, name, f"{lat.median_ms:.3f}", f"{speedup:.2f}x",
                         f"{size / 1024:.0f}", f"{base_size / size:.2f}x", f"{100 * lat.cv:.1f} %"])
            print(rows[-1], flush=True)
    return rows


def run() -> None:
    from objectives.tasks import TASKS, get_task

    rows = measure_task(get_task("digits"), "digits MLP (batch 256)")
    if "minilm_text" in TASKS:
        try:
            task = get_task("minilm_text")
            rows += measure_task(task, f"MiniLM-L6 (batch {task.latency_batch_size})")
        except Exception as exc:  # the text extra may be missing
            print(f"minilm_text skipped: {exc}")
    body = "\n".join([
        "## Precision: latency and size (teachers, no pruning)",
        "",
        f"`python -m benchmarks --only quantization`. Machine: {machine()}. CPU, the task's "
        "thread count (1), median of ≥ 30 timed samples.",
        "",
        table(["model", "precision", "latency ms", "speed-up", "size KiB", "smaller",
               "latency CV"], rows),
        "",
        "int4 is torchao's weight-only `IntxWeightOnlyConfig(int4, groups of 32)`: the weights "
        "are stored packed (two per byte) but dequantized on the fly, so on CPU it buys size, "
        "not speed. torchao's `Int4WeightOnlyConfig` needs a kernel library that is not "
        "available for CPU here.",
        "",
        "GPU rows (fp32 / bf16 / int8 / int4 on an H100): **not yet measured** — no GPU "
        "machine was lent to the session that wrote this.",
    ])
    write_section("quantization", body)
