"""Structured pruning through Torch-Pruning: channels and hidden neurons really removed."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from objectives._errors import TaskError
from objectives._task import Inputs


def prune_structured(
    model: nn.Module,
    example_inputs: Inputs,
    ratio: float,
    *,
    ignored_layers: Sequence[nn.Module] = (),
) -> nn.Module:
    """Remove ``ratio`` of the prunable channels of ``model`` in place and return it.

    Torch-Pruning's dependency graph keeps coupled layers consistent (a Linear's output
    neurons with the next Linear's inputs, a Conv's channels with its BatchNorm and any
    residual additions). Channels are ranked by the L2 magnitude of their group, so the
    result is a deterministic function of the weights and the ratio. ``ratio == 0``
    returns ``model`` untouched.

    Raises:
        TaskError: if Torch-Pruning cannot trace or prune the model.
    """
    if ratio <= 0.0:
        return model
    import torch_pruning as tp

    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruner = tp.pruner.BasePruner(
                model,
                example_inputs,
                importance=tp.importance.GroupMagnitudeImportance(p=2),
                pruning_ratio=float(ratio),
                ignored_layers=list(ignored_layers),
                round_to=None,
            )
            with torch.no_grad():
                pruner.step()
    except Exception as exc:  # torch-pruning raises many types on unsupported graphs
        raise TaskError(
            f"structured pruning failed for {type(model).__name__}: "
            f"{type(exc).__name__}: {exc}; drop prune_ratio from the space or fix it at 0"
        ) from exc
    return model

