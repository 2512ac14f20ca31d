"""The model file: weights to and from safetensors — no pickle, including quantized layers.

Quantized weights are stored as plain tensors: the int8 (or packed int4) values plus
their scale(s), zero point(s) and quantization axis. Tensors that share memory (tied
weights) are stored once, with the aliases listed in the file's metadata, so the file
size is the honest size of the compressed model: it is the size objective
(``TrialResult.size_bytes``). ``count_parameters`` counts the weight elements the file
holds.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from objectives._errors import TaskError
from objectives.operators._quantize import dynamic_int8_modules, is_int4_weight

_QSUFFIX = (".int8", ".int4", ".scale", ".zero_point", ".axis")


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


def _plain_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    dyn = dynamic_int8_modules()
    out: dict[str, torch.Tensor] = {}
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        if isinstance(module, dyn):
            w = module.weight()
            key = f"{prefix}weight"
            out[f"{key}.int8"] = w.int_repr()
            if w.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
                out[f"{key}.scale"] = torch.tensor([w.q_scale()], dtype=torch.float64)
                out[f"{key}.zero_point"] = torch.tensor([w.q_zero_point()], dtype=torch.int64)
            else:
                out[f"{key}.scale"] = w.q_per_channel_scales().to(torch.float64)
                out[f"{key}.zero_point"] = w.q_per_channel_zero_points().to(torch.int64)
                out[f"{key}.axis"] = torch.tensor([w.q_per_channel_axis()], dtype=torch.int64)
            b = module.bias()
            if b is not None:
                out[f"{prefix}bias"] = b.detach()
            continue
        for name, p in module.named_parameters(recurse=False):
            if is_int4_weight(p):
                out.update(_int4_tensors(f"{prefix}{name}", p))
                continue
            out[f"{prefix}{name}"] = p.detach()
        persistent = set(module._buffers) - module._non_persistent_buffers_set
        for name, buf in module.named_buffers(recurse=False):
            if buf is not None and name in persistent:
                out[f"{prefix}{name}"] = buf.detach()
    return out


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> int:
    """Write ``model``'s weights to ``path`` (safetensors, atomically); return the file's bytes."""
    tensors = _plain_tensors(model)
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, int, tuple[int, ...], torch.dtype], str] = {}
    for k, t in tensors.items():
        t = t.cpu()
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
        if t.numel() > 0 and ident in seen:
            aliases[k] = seen[ident]
            continue
        seen[ident] = k
        unique[k] = t.contiguous().clone() if not t.is_contiguous() else t.contiguous()
    meta = dict(metadata or {})
    meta["slimsearch.aliases"] = json.dumps(aliases, sort_keys=True)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    # safetensors refuses tensors that share storage even after de-duplication by
    # identity (e.g. views); cloning those few is cheaper than failing.
    try:
        save_file(unique, str(tmp), metadata=meta)
    except (RuntimeError, ValueError):
        save_file({k: v.clone() for k, v in unique.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path.stat().st_size


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load weights written by ``save_weights`` into ``model``, whose structure must match.

    Raises:
        TaskError: if the file is unreadable or does not match the model's structure.
    """
    path = Path(path)
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (OSError, SafetensorError, ValueError) as exc:
        raise TaskError(f"cannot read weights file {str(path)!r}: {exc}") from None
    try:
        aliases = json.loads(meta.get("slimsearch.aliases", "{}"))
    except json.JSONDecodeError:
        raise TaskError(f"weights file {str(path)!r} has corrupt metadata") from None
    for alias, target in aliases.items():
        if target not in tensors:
            raise TaskError(f"weights file {str(path)!r} is corrupt: alias of missing {target!r}")
        tensors[alias] = tensors[target]

    expected = _plain_tensors(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise TaskError(
            f"weights file {str(path)!r} does not match the model: "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    for k, t in expected.items():
        if not k.endswith(_QSUFFIX) and tuple(tensors[k].shape) != tuple(t.shape):
            raise TaskError(
                f"weights file {str(path)!r} does not match the model: {k} has shape "
                f"{tuple(tensors[k].shape)}, model expects {tuple(t.shape)}"
            )

    dyn = dynamic_int8_modules()
    with torch.no_grad():
        for mod_name, module in model.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            if isinstance(module, dyn):
                key = f"{prefix}weight"
                ints = tensors[f"{key}.int8"]
                scale = tensors[f"{key}.scale"]
                zp = tensors[f"{key}.zero_point"]
                if f"{key}.axis" in tensors:
                    q = torch._make_per_channel_quantized_tensor(
                        ints, scale, zp, int(tensors[f"{key}.axis"].item())
                    )
                else:
                    q = torch._make_per_tensor_quantized_tensor(
                        ints, float(scale.item()), int(zp.item())
                    )
                bias = tensors.get(f"{prefix}bias")
                module.set_weight_bias(q, bias)
                continue
            for name, p in module.named_parameters(recurse=False):
                if is_int4_weight(p):
                    _load_int4(f"{prefix}{name}", p, tensors)
                    continue
                p.copy_(tensors[f"{prefix}{name}"])
            for name, buf in module.named_buffers(recurse=False):
                k = f"{prefix}{name}"
                if buf is not None and k in tensors:
                    buf.copy_(tensors[k])
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of weight elements, counting int8 dynamic-quantized weights too."""
    return sum(
        2 * t.numel() if k.endswith(".int4") else t.numel()  # two int4 values per byte
        for k, t in _plain_tensors(model).items()
        if not k.endswith((".scale", ".zero_point", ".axis", ".weight_scale", ".token_map"))
    )
