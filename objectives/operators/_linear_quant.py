"""bf16, int8 dynamic and int4 weight-only quantization of named ``nn.Linear`` layers.

The leaf both ``_quantize`` (whole models) and ``_allocation`` (one layer at a time, to
measure its sensitivity and its bytes) build on, so a layer is stored the same way in
both.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from objectives._imports import import_torchao
from objectives.operators._static_int8 import quiet

INT4_GROUP_SIZE = 32
"""Preferred int4 group: 32 weights of a row share a scale and zero point."""


def linear_names(model: nn.Module) -> list[str]:
    """Qualified names of the ``nn.Linear`` layers of ``model``, in registration order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def int4_group_size(in_features: int) -> int:
    """The int4 group for a Linear of input width ``in_features``.

    32 when it divides ``in_features``; else the largest divisor in [8, 32]; else the
    whole row (one scale per output row), so every width gets a group.
    """
    if in_features % INT4_GROUP_SIZE == 0:
        return INT4_GROUP_SIZE
    for group in range(INT4_GROUP_SIZE - 1, 7, -1):
        if in_features % group == 0:
            return group
    return in_features


class BFloat16Module(nn.Module):
    """Runs a bf16 copy of a model: floating inputs are cast in, logits cast back to fp32.

    ``module`` is cast to bf16 in place; with ``cast=False`` it is wrapped as it is (a
    model already in bf16 whose ``Float32Island`` layers must stay fp32).
    """

    def __init__(self, module: nn.Module, *, cast: bool = True) -> None:
        super().__init__()
        self.module = module.to(torch.bfloat16) if cast else module

    def forward(self, *args: object, **kwargs: object) -> object:
        def cast(x: object) -> object:
            if isinstance(x, torch.Tensor) and x.is_floating_point():
                return x.to(torch.bfloat16)
            return x

        out = self.module(*[cast(a) for a in args], **{k: cast(v) for k, v in kwargs.items()})
        if isinstance(out, torch.Tensor):
            return out.float()
        if hasattr(out, "logits"):
            out.logits = out.logits.float()
        return out


class BFloat16Linear(nn.Module):
    """An ``nn.Linear`` whose weight is stored and multiplied in bf16.

    The input is cast to bf16 for the matrix product and the result back to the input's
    dtype; the bias stays fp32 and is added after (as int8 dynamic and int4 layers keep
    theirs), so only the weight's precision differs from the fp32 layer. Not an
    ``nn.Linear`` subclass: code that looks for float ``nn.Linear`` layers (pruning,
    quantization, allocation) must not take it for one. The model file stores the weight
    as a plain bf16 tensor (two bytes per element).
    """

    def __init__(self, layer: nn.Linear) -> None:
        super().__init__()
        self.in_features = layer.in_features
        self.out_features = layer.out_features
        self.weight = nn.Parameter(layer.weight.detach().to(torch.bfloat16), requires_grad=False)
        self.bias = (None if layer.bias is None
                     else nn.Parameter(layer.bias.detach().float(), requires_grad=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x.to(torch.bfloat16), self.weight).to(x.dtype)
        return out if self.bias is None else out + self.bias.to(x.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, dtype=bfloat16")


class Float32Island(nn.Module):
    """A layer that computes in fp32 inside a bf16 model (a per-layer allocation on a bf16
    base, ``quantize(..., 16, layer_bits=...)``): the input is cast to fp32, ``inner``
    (an fp32 ``nn.Linear``, a dynamic int8 or an int4 weight-only layer, none of which
    takes bf16 activations) runs on it and the result is cast back to the input's dtype.
    The casts are part of the layer's measured time. ``inner`` keeps its own storage
    (``inner.weight`` in the file); a bf16 cast of the enclosing model must not reach it,
    so islands are put in after the model is cast."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.float()).to(x.dtype)


def bf16_linear(model: nn.Module, names: set[str]) -> nn.Module:
    """``model`` with the named ``nn.Linear`` layers replaced by ``BFloat16Linear``, in
    place."""
    for name in sorted(names):
        set_layer(model, name, BFloat16Linear(model.get_submodule(name)))
    return model


def set_layer(model: nn.Module, name: str, layer: nn.Module) -> None:
    """Put ``layer`` at the qualified ``name`` of ``model`` (in place)."""
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, layer)


def int8_dynamic(model: nn.Module, names: set[str]) -> nn.Module:
    """``model`` with the named layers int8 dynamic, on the CPU (a copy: ``model`` stays
    where it is, unchanged; ``model`` itself when ``names`` is empty)."""
    import copy

    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    if not names:
        return model
    with quiet():
        return quantize_dynamic(
            copy.deepcopy(model).cpu(), {n: default_dynamic_qconfig for n in names},
            dtype=torch.qint8, inplace=True,
        )


def int4_weight_only(model: nn.Module, names: set[str]) -> nn.Module:
    """``model`` with the named Linear layers int4 weight-only, in place."""
    tq = import_torchao()
    groups: dict[int, set[str]] = {}
    for name in names:
        groups.setdefault(int4_group_size(model.get_submodule(name).in_features), set()).add(name)
    with quiet():
        for group, members in sorted(groups.items()):
            config = tq.IntxWeightOnlyConfig(
                weight_dtype=torch.int4, granularity=tq.PerGroup(group)
            )
            tq.quantize_(
                model, config,
                filter_fn=lambda m, fqn, members=members: isinstance(m, nn.Linear)
                and fqn in members,
            )
    return model
