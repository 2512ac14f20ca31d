"""The model file: weights to and from safetensors — no pickle, including quantized layers.

Quantized weights are stored as plain tensors: the int8 (or packed int4) values plus
their scale(s), zero point(s) and quantization axis; activation quantization parameters
of static int8 layers likewise (key contract: ``objectives.operators._quantized_state``).
Tensors that share memory (tied weights) are stored once, with the aliases listed in the
file's metadata, so the file size is the honest size of the compressed model: it is the
size objective (``TrialResult.size_bytes``). ``count_parameters`` counts the weight
elements the file holds.
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
from objectives.operators._quantized_state import (
    QPARAM_SUFFIXES,
    QSUFFIX,
    load_plain_tensors,
    plain_tensors,
)

_QSUFFIX = QSUFFIX
_plain_tensors = plain_tensors  # the key contract is stated in ``_quantized_state``


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
        if not k.endswith(QPARAM_SUFFIXES) and tuple(tensors[k].shape) != tuple(t.shape):
            raise TaskError(
                f"weights file {str(path)!r} does not match the model: {k} has shape "
                f"{tuple(tensors[k].shape)}, model expects {tuple(t.shape)}"
            )
    return load_plain_tensors(model, tensors)


def count_parameters(model: nn.Module) -> int:
    """Number of weight elements (biases and norms included), int8 and int4 weights
    counted as elements, quantization parameters (scales, zero points, axes) not."""
    return sum(
        2 * t.numel() if k.endswith(".int4") else t.numel()  # two int4 values per byte
        for k, t in _plain_tensors(model).items()
        if not k.endswith((*QPARAM_SUFFIXES, ".weight_scale", ".token_map"))
    )
