"""The module and tensor types quantization produces: what the model file must recognise.

A leaf shared by ``_quantize`` (which makes them) and ``_quantized_state`` (which writes
and reads them), so neither imports the other for these.
"""

from __future__ import annotations

import torch
from torch import nn


def dynamic_int8_modules() -> tuple[type[nn.Module], ...]:
    """Module types that int8 dynamic quantization produces for ``nn.Linear`` layers
    (``weight()``/``bias()`` accessors; see ``dynamic_int8_rnn_modules`` for LSTM/GRU)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynLinear

    return (DynLinear,)


def dynamic_int8_rnn_modules() -> tuple[type[nn.Module], ...]:
    """Module types that int8 dynamic quantization produces for ``nn.LSTM``/``nn.GRU``
    (``get_weight()``/``get_bias()`` dicts keyed by the float layer's parameter names)."""
    from torch.ao.nn.quantized.dynamic import GRU, LSTM

    return (LSTM, GRU)


def is_int4_weight(t: object) -> bool:
    """Whether ``t`` is a torchao int4 weight (int4 values unpacked in int8 storage)."""
    return (
        type(t).__name__ == "IntxUnpackedToInt8Tensor"
        and getattr(t, "target_dtype", None) == torch.int4
    )
