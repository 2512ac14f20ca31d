"""int8 dynamic and int4 weight-only quantization of named ``nn.Linear`` layers.

The leaf both ``_quantize`` (whole models) and ``_allocation`` (one layer at a time, to
measure its sensitivity and its bytes) build on, so a layer is stored the same way in
both.
"""

from __future__ import annotations

import torch
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
