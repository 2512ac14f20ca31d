"""Hugging Face ``Conv1D`` (GPT-2's projections) rewritten as the ``nn.Linear`` it is.

GPT-2 and its relatives store every projection as ``transformers.pytorch_utils.Conv1D``:
``y = x @ W + b`` with ``W`` of shape ``(in, out)`` — a Linear with a transposed weight.
Pruning and quantization libraries know ``nn.Linear``, not ``Conv1D``, so a model's
``Conv1D`` layers are swapped for exact ``nn.Linear`` equivalents before either runs
(same outputs to float rounding). The swap is deterministic, so a recipe re-applies it.
"""

from __future__ import annotations

import torch
from torch import nn

ORIGIN_ATTR = "_slimsearch_origin"
"""Attribute naming the teacher layer a (pruned, renumbered) module came from
(``objectives.operators._allocation``); kept when a ``Conv1D`` becomes a Linear."""


def is_hf_conv1d(module: nn.Module) -> bool:
    """Whether ``module`` is a Hugging Face ``Conv1D`` (matched by class name and shape
    contract, so transformers need not be imported)."""
    return (
        type(module).__name__ == "Conv1D"
        and hasattr(module, "nf")
        and isinstance(getattr(module, "weight", None), torch.Tensor)
        and module.weight.dim() == 2
    )


def linearize_conv1d(model: nn.Module) -> nn.Module:
    """Replace every Hugging Face ``Conv1D`` in ``model`` by an equivalent ``nn.Linear``.

    Works in place and returns ``model`` (a model that is itself a ``Conv1D`` is returned
    as a new ``nn.Linear``). Models without ``Conv1D`` are returned unchanged.
    """
    if is_hf_conv1d(model):
        return _as_linear(model)
    targets = [(name, m) for name, m in model.named_modules() if is_hf_conv1d(m)]
    for name, conv in targets:
        parent, _, attr = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, attr, _as_linear(conv))
    return model


def _as_linear(conv: nn.Module) -> nn.Linear:
    weight = conv.weight.detach()  # (in, out)
    bias = getattr(conv, "bias", None)
    linear = nn.Linear(
        weight.shape[0], weight.shape[1], bias=bias is not None,
        device=weight.device, dtype=weight.dtype,
    )
    with torch.no_grad():
        linear.weight.copy_(weight.t())
        if bias is not None:
            linear.bias.copy_(bias.detach())
    linear.train(conv.training)
    return carry_origin(conv, linear)


def carry_origin(old: nn.Module, new: nn.Module) -> nn.Module:
    """Give ``new`` (a rebuilt replacement of ``old``) ``old``'s ``ORIGIN_ATTR``, if any;
    return ``new``. Every operator that swaps a module for a new one calls this."""
    if ORIGIN_ATTR in old.__dict__:
        new.__dict__[ORIGIN_ATTR] = old.__dict__[ORIGIN_ATTR]
    return new
