"""The accuracy objective: the task's metric of a model on held-out data.

Each batch holds the machine's measurement lock shared (see ``MeasurementLock``), so it
never runs while another trial on the machine is timing latency.
"""

from __future__ import annotations

import torch
from torch import nn

from objectives._task import Split, Task, forward, take, to_device
from objectives.measure._lock import working


@torch.inference_mode()
def evaluate_metric(
    model: nn.Module,
    split: Split,
    task: Task,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> float:
    """``task.metric`` of ``model`` over ``split`` (eval mode)."""
    model.eval()
    logits = []
    for start in range(0, len(split), batch_size):
        with working():
            xb = to_device(take(split.inputs, slice(start, start + batch_size)), device)
            logits.append(forward(model, xb).float().cpu())
    return float(task.metric(torch.cat(logits), split.labels))
