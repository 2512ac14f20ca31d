"""Teacher-logit cache: a distillation trial with the cache warm against cold.

Cold: the teacher's logits over the training split are computed inside the trial (the
in-process and on-disk caches are cleared first). Warm: they come from the cache, as for
every trial of a study after the first. Alternating runs, same config and seed.
"""

from __future__ import annotations

import statistics

from benchmarks._report import machine, table, write_section
from objectives import CompressionConfig, Task, evaluate, forget_teacher_logits


def _trial_seconds(task: Task, config: CompressionConfig, *, warm: bool) -> float:
    if not warm:
        forget_teacher_logits(task, on_disk=True)
    return evaluate(task, config, seed=0).timings["compute_s"]


def measure(task: Task, label: str, repeats: int = 3) -> list[object]:
    if task.space_preset == "transformer":
        config = CompressionConfig(attn_prune_ratio=0.25, ffn_prune_ratio=0.25, quant_bits=8)
    else:
        config = CompressionConfig(prune_ratio=0.25, quant_bits=8)
    _trial_seconds(task, config, warm=False)  # warm-up: imports, allocator
    cold, warm = [], []
    for _ in range(repeats):
        cold.append(_trial_seconds(task, config, warm=False))
        warm.append(_trial_seconds(task, config, warm=True))
    c, w = statistics.median(cold), statistics.median(warm)
    row = [label, len(task.train), f"{c:.2f}", f"{w:.2f}", f"{c / w:.2f}x"]
    print(row, flush=True)
    return row


def run() -> None:
    from objectives.tasks import TASKS, get_task

    rows = [measure(get_task("digits"), "digits MLP")]
    if "minilm_text" in TASKS:
        try:
            rows.append(measure(get_task("minilm_text"), "MiniLM-L6 text", repeats=2))
        except Exception as exc:
            print(f"minilm_text skipped: {exc}")
    body = "\n".join([
        "## Teacher-logit cache",
        "",
        f"`python -m benchmarks --only logit_cache`. Machine: {machine()}. Median seconds of "
        "one distillation trial (prune 0.25 of channels, or of heads and FFN neurons, + "
        "int8), cache cold (teacher logits computed in the trial) against warm (read from "
        "the study's cache). Target ≥ 1.3x.",
        "",
        table(["task", "train rows", "cold s", "warm s", "speed-up"], rows),
    ])
    write_section("logit-cache", body)
