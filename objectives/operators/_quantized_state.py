"""A (quantized) model's state as plain tensors, and back: the layout of the model file.

Contract (a coverage metric parses ``plain_tensors``):

* Every quantized weight matrix or kernel is exactly one key ``<module path>.<param
  name>.int8`` (int8 values) or ``....int4`` (two 4-bit values per byte), e.g.
  ``features.0.weight.int8``, ``rnn.weight_ih_l0.int8``, ``head.weight.int4``. Its
  companions are ``.scale`` (float32, one per tensor / channel / group), ``.zero_point``
  (int8 — a qint8 weight's zero point lies in its range; torchao's own dtype for int4)
  and, for per-channel weights, ``.axis`` (int32). Activation zero points are int32.
* A convolution in eager static int8 (``EagerStaticConv``) is stored under the wrapped
  convolution's own path (``conv_a.weight.int8``, not ``conv_a.conv.weight.int8``).
* Activation quantization parameters are companions too, never weights: a static int8
  layer's output ``<path>.output.scale`` / ``.output.zero_point``, an eager wrapper's input
  ``<path>.input.scale`` / ``.input.zero_point``, and an FX graph's input/add
  parameters, buffers such as ``stem_0_input_scale_0``, as ``<buffer>.scale`` /
  ``<buffer>.zero_point``.
* Biases and every weight left in floating point appear under their plain names.

``load_plain_tensors`` is the exact inverse for a model of the same structure, and
``canonicalize`` makes a freshly quantized model equal to what its file reloads to.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from objectives._errors import TaskError
from objectives.operators._qtypes import (
    dynamic_int8_modules,
    dynamic_int8_rnn_modules,
    is_int4_weight,
)
from objectives.operators._static_int8 import EagerStaticConv

QSUFFIX = (".int8", ".int4", ".scale", ".zero_point", ".axis")
"""Key endings of quantized values and their parameters."""

QPARAM_SUFFIXES = (".scale", ".zero_point", ".axis")
"""Key endings of quantization parameters (not weight elements)."""

_FX_QPARAM = re.compile(r"(scale|zero_point)_\d+$")


def _weight_layer_types() -> tuple[type[nn.Module], ...]:
    """Quantized modules with ``weight()``/``bias()``/``set_weight_bias(w, b)``."""
    from torch.ao.nn.quantized import Linear
    from torch.ao.nn.quantized.modules.conv import _ConvNd

    return (Linear, _ConvNd)  # Linear covers the dynamic Linear (a subclass)


def _is_ao_quantized(module: nn.Module) -> bool:
    return type(module).__module__.startswith(
        ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")
    )


def _encode(key: str, w: torch.Tensor) -> dict[str, torch.Tensor]:
    if w.dtype != torch.qint8:
        raise TaskError(f"quantized weight {key} is {w.dtype}; only qint8 weights are stored")
    out = {f"{key}.int8": w.int_repr()}
    if w.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        out[f"{key}.scale"] = torch.tensor([w.q_scale()], dtype=torch.float32)
        out[f"{key}.zero_point"] = torch.tensor([w.q_zero_point()], dtype=torch.int8)
    else:
        out[f"{key}.scale"] = w.q_per_channel_scales().to(torch.float32)
        out[f"{key}.zero_point"] = w.q_per_channel_zero_points().to(torch.int8)
        out[f"{key}.axis"] = torch.tensor([w.q_per_channel_axis()], dtype=torch.int32)
    return out


def _decode(key: str, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    ints = tensors[f"{key}.int8"].to(torch.int8)
    scale = tensors[f"{key}.scale"].to(torch.float64)
    zp = tensors[f"{key}.zero_point"].to(torch.int64)
    if f"{key}.axis" in tensors:
        axis = int(tensors[f"{key}.axis"].item())
        return torch._make_per_channel_quantized_tensor(ints, scale, zp, axis)
    return torch._make_per_tensor_quantized_tensor(ints, float(scale.item()), int(zp.item()))


def _int4_tensors(key: str, weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """A torchao int4 weight as plain tensors: two 4-bit values per byte, scales, zeros."""
    q = weight.qdata.detach().reshape(-1).to(torch.int16) + 8  # [-8, 7] -> [0, 15]
    if q.numel() % 2:
        q = torch.cat([q, q.new_zeros(1)])
    packed = (q[0::2] | (q[1::2] << 4)).to(torch.uint8)
    return {
        f"{key}.int4": packed,
        f"{key}.scale": weight.scale.detach(),
        f"{key}.zero_point": weight.zero_point.detach(),
    }


def _load_int4(key: str, weight: torch.Tensor, tensors: dict[str, torch.Tensor]) -> None:
    packed = tensors[f"{key}.int4"].to(torch.int16)
    values = torch.stack([packed & 0xF, packed >> 4], dim=1).reshape(-1) - 8
    n = weight.qdata.numel()
    if values.numel() not in (n, n + 1):
        raise TaskError(f"int4 weight {key} holds {values.numel()} values, model expects {n}")
    weight.qdata.copy_(values[:n].reshape(weight.qdata.shape).to(torch.int8))
    weight.scale.copy_(tensors[f"{key}.scale"])
    weight.zero_point.copy_(tensors[f"{key}.zero_point"])


def _output_qparams(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    """A static int8 layer's output scale and zero point (Python numbers on the module)."""
    if not _is_ao_quantized(module) or isinstance(module, dynamic_int8_modules()):
        return {}
    scale, zp = module.__dict__.get("scale"), module.__dict__.get("zero_point")
    if not isinstance(scale, float) or not isinstance(zp, int):
        return {}
    return {
        f"{prefix}output.scale": torch.tensor([scale], dtype=torch.float32),
        f"{prefix}output.zero_point": torch.tensor([zp], dtype=torch.int32),
    }


def _set_output_qparams(prefix: str, module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    if f"{prefix}output.scale" in tensors:
        module.scale = float(tensors[f"{prefix}output.scale"].item())
        module.zero_point = int(tensors[f"{prefix}output.zero_point"].item())


def _buffer_key(module: nn.Module, prefix: str, name: str) -> str:
    match = _FX_QPARAM.search(name) if isinstance(module, torch.fx.GraphModule) else None
    return f"{prefix}{name}.{match.group(1)}" if match else f"{prefix}{name}"


def _walk(model: nn.Module):  # noqa: ANN202 - yields (prefix, module, kind)
    """Modules with what they hold; descendants of packed layers are skipped."""
    weight_layers, rnns = _weight_layer_types(), dynamic_int8_rnn_modules()
    packed: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(p) for p in packed):
            continue
        prefix = f"{name}." if name else ""
        if isinstance(module, EagerStaticConv):
            kind = "eager_conv"
        elif isinstance(module, weight_layers):
            kind = "weight_layer"
        elif isinstance(module, rnns):
            kind = "rnn"
        elif hasattr(module, "_packed_params") or hasattr(module, "_all_weight_values"):
            raise TaskError(
                f"{type(module).__name__} {name!r} holds packed quantized weights the model "
                "file cannot store; quantize with objectives.quantize, which produces only "
                "storable layers"
            )
        else:
            kind = "plain"
        if kind != "plain":
            packed.append(prefix)
        yield prefix, module, kind


def plain_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state as plain tensors, keyed as the module docstring states."""
    out: dict[str, torch.Tensor] = {}
    for prefix, module, kind in _walk(model):
        if kind == "eager_conv":
            out.update(_weight_layer(prefix, module.conv))
            out[f"{prefix}input.scale"] = module.quant.scale.detach().to(torch.float32)
            out[f"{prefix}input.zero_point"] = module.quant.zero_point.detach().to(torch.int32)
            continue
        if kind == "weight_layer":
            out.update(_weight_layer(prefix, module))
            continue
        if kind == "rnn":
            for name, w in module.get_weight().items():
                out.update(_encode(f"{prefix}{name}", w))
            for name, b in module.get_bias().items():
                if b is not None:
                    out[f"{prefix}{name}"] = b.detach()
            continue
        out.update(_output_qparams(prefix, module))
        for name, p in module.named_parameters(recurse=False):
            if is_int4_weight(p):
                out.update(_int4_tensors(f"{prefix}{name}", p))
                continue
            out[f"{prefix}{name}"] = p.detach()
        persistent = set(module._buffers) - module._non_persistent_buffers_set
        for name, buf in module.named_buffers(recurse=False):
            if buf is not None and name in persistent:
                key = _buffer_key(module, prefix, name)
                if key.endswith(".zero_point") and buf.dtype == torch.int64:
                    buf = buf.to(torch.int32)
                out[key] = buf.detach()
    return out


def _weight_layer(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    out = _encode(f"{prefix}weight", module.weight())
    bias = module.bias()
    if bias is not None:
        out[f"{prefix}bias"] = bias.detach()
    out.update(_output_qparams(prefix, module))
    return out


def _load_weight_layer(prefix: str, module: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    module.set_weight_bias(_decode(f"{prefix}weight", tensors), tensors.get(f"{prefix}bias"))
    _set_output_qparams(prefix, module, tensors)


def load_plain_tensors(model: nn.Module, tensors: dict[str, torch.Tensor]) -> nn.Module:
    """Set ``model``'s state from ``tensors`` (as ``plain_tensors`` keys it) and return it.

    The caller checks that the key sets match; values are copied (float tensors cast to
    the model's dtypes).
    """
    with torch.no_grad():
        for prefix, module, kind in _walk(model):
            if kind == "eager_conv":
                _load_weight_layer(prefix, module.conv, tensors)
                module.quant.scale.copy_(tensors[f"{prefix}input.scale"])
                module.quant.zero_point.copy_(tensors[f"{prefix}input.zero_point"])
                continue
            if kind == "weight_layer":
                _load_weight_layer(prefix, module, tensors)
                continue
            if kind == "rnn":
                state: dict[str, torch.Tensor | None] = {
                    name: _decode(f"{prefix}{name}", tensors) for name in module.get_weight()
                }
                for name in module.get_bias():
                    state[name] = tensors.get(f"{prefix}{name}")
                module.set_weight_bias(state)
                continue
            _set_output_qparams(prefix, module, tensors)
            for name, p in module.named_parameters(recurse=False):
                if is_int4_weight(p):
                    _load_int4(f"{prefix}{name}", p, tensors)
                    continue
                p.copy_(tensors[f"{prefix}{name}"])
            for name, buf in module.named_buffers(recurse=False):
                key = _buffer_key(module, prefix, name)
                if buf is not None and key in tensors:
                    buf.copy_(tensors[key])
    return model


def canonicalize(model: nn.Module) -> nn.Module:
    """Round ``model``'s quantization parameters to the stored dtypes (float32 scales),
    so it computes exactly what its file reloads to."""
    return load_plain_tensors(model, plain_tensors(model))
