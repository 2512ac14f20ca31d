"""Depth pruning of decoder LMs: remove whole decoder layers that change their input least.

Importance is **block influence** (ShortGPT, Men et al. 2024): for each block, one minus
the mean cosine similarity between the hidden state entering it and the one leaving it,
over the non-padding tokens of ``CALIBRATION_ROWS`` (at most) training rows. A block whose
output is nearly its input does little and goes first. ``removed_units(ratio, L)``
blocks are removed (``objectives.operators._ratio``: ``ceil(ratio · L)`` — at least one
for any positive ratio — and at least one block always kept; a one-block model is
refused); ties are broken by position, so the choice is a deterministic function of the
weights and the calibration data.

After removal the kept blocks are renumbered (``layer_idx``, which the KV cache indexes
by), and the config says the new depth (``num_hidden_layers`` / ``n_layer``; the
per-layer lists named in ``PER_LAYER_KEYS`` are sliced, every other attribute is left
as it is), so ``save_pretrained`` / ``from_pretrained`` and cached generation keep
working.

Adapter note (checked against transformers 5.24.0): the attention modules of Llama,
Mistral, Qwen2/3 (``self_attn.layer_idx``) and GPT-2 (``attn.layer_idx``) keep the index
they were built with and pass it to ``cache.update``; ``PER_LAYER_KEYS`` are the
configs' per-layer lists in that version (``layer_types``: Qwen2/3, Gemma, Ministral and
others; ``no_rope_layers``: SmolLM3). ``mlp_only_layers`` (Qwen MoE) is
a list of layer *indices*, not one entry per layer, and is not sliced. GPT-2 with
``scale_attn_by_inverse_layer_idx`` derives each block's attention scale from its index
at construction, so a renumbered block would reload with another scale: refused.
``tests/objectives/test_causal_lm.py`` checks a pruned model against one freshly built
from the rewritten config, with and without the KV cache.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from objectives._errors import TaskError
from objectives._task import Inputs, forward, take
from objectives.operators._conv1d import carry_origin
from objectives.operators._ratio import removed_units

CALIBRATION_ROWS = 64
"""Rows of the calibration inputs the block influence is measured on."""

_DEPTH_ATTRS = ("num_hidden_layers", "n_layer")
PER_LAYER_KEYS = ("layer_types", "no_rope_layers")
"""Config attributes holding one entry per decoder layer (sliced with the layers)."""


def decoder_blocks(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """``(name, blocks)`` of a Hugging Face decoder's layer list, or ``None``.

    The list is the ``nn.ModuleList`` as long as the config's depth whose blocks own a
    causal self-attention (``self_attn`` as in Llama/Mistral/Qwen, ``attn`` as in GPT-2).
    """
    config = getattr(model, "config", None)
    depth = next((getattr(config, a) for a in _DEPTH_ATTRS
                  if isinstance(getattr(config, a, None), int)), None)
    if depth is None or getattr(config, "is_encoder_decoder", False):
        return None
    for name, m in model.named_modules():
        if (isinstance(m, nn.ModuleList) and len(m) == depth and len(m) > 0
                and all(hasattr(b, "self_attn") or hasattr(b, "attn") for b in m)):
            return name, m
    return None


def refuse_depth(model: nn.Module, ratio: float) -> None:
    """Raise (one line) if ``depth_prune_ratio=ratio`` cannot apply to ``model``."""
    if ratio > 0.0 and decoder_blocks(model) is None:
        raise TaskError(
            f"depth_prune_ratio={ratio:g} removes decoder layers and {type(model).__name__} "
            "is not a Hugging Face decoder (no list of self-attention blocks as long as its "
            "config's num_hidden_layers); fix depth_prune_ratio at 0"
        )
    if ratio > 0.0 and getattr(model.config, "scale_attn_by_inverse_layer_idx", False):
        raise TaskError(
            f"depth_prune_ratio={ratio:g} renumbers decoder layers and this GPT-2 config "
            "scales attention by the layer index (scale_attn_by_inverse_layer_idx), so the "
            "pruned model would reload with other scales; fix depth_prune_ratio at 0"
        )


@torch.no_grad()
def block_influence(model: nn.Module, calibration: Inputs) -> list[float]:
    """Block influence of every decoder block on ``calibration`` (see module docstring)."""
    found = decoder_blocks(model)
    if found is None:
        raise TaskError(f"{type(model).__name__} has no decoder blocks to rank")
    _, blocks = found
    n = min(CALIBRATION_ROWS, next(iter(calibration.values())).shape[0]
            if isinstance(calibration, Mapping) else calibration.shape[0])
    rows = take(calibration, slice(0, n))
    mask = rows.get("attention_mask") if isinstance(rows, Mapping) else None
    sums = [0.0] * len(blocks)
    counts = [0] * len(blocks)

    def hook(i: int) -> Callable[..., None]:
        def record(module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
            x = args[0] if args else kwargs["hidden_states"]
            y = output[0] if isinstance(output, (tuple, list)) else output
            cos = F.cosine_similarity(x.float(), y.float(), dim=-1)  # [rows, tokens]
            keep = (mask.bool() if mask is not None and mask.shape == cos.shape
                    else torch.ones_like(cos, dtype=torch.bool))
            sums[i] += float(cos[keep].sum())
            counts[i] += int(keep.sum())
        return record

    handles = [b.register_forward_hook(hook(i), with_kwargs=True) for i, b in enumerate(blocks)]
    was_training = model.training
    model.eval()
    try:
        forward(model, rows)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [1.0 - s / c if c else 0.0 for s, c in zip(sums, counts, strict=True)]


def prune_depth(model: nn.Module, calibration: Inputs, ratio: float) -> list[int]:
    """Remove ``removed_units(ratio, L)`` decoder blocks of lowest block influence, in place.

    Returns the removed blocks' original indices (empty for ``ratio == 0``, never empty
    for a positive ratio).

    Raises:
        TaskError: ``model`` is not a Hugging Face decoder (see ``refuse_depth``), or it
            has a single block.
    """
    if ratio <= 0.0:
        return []
    refuse_depth(model, ratio)
    name, blocks = decoder_blocks(model)  # type: ignore[misc]
    depth = len(blocks)
    remove = removed_units(ratio, depth, setting="depth_prune_ratio", unit="decoder layers")
    influence = block_influence(model, calibration)
    order = sorted(range(depth), key=lambda i: (influence[i], i))
    removed = sorted(order[:remove])
    kept = [b for i, b in enumerate(blocks) if i not in set(removed)]
    for new_idx, block in enumerate(kept):
        for m in block.modules():
            if hasattr(m, "layer_idx"):  # adapter: see module docstring
                m.layer_idx = new_idx
    parent, _, attr = name.rpartition(".")
    layers = carry_origin(blocks, nn.ModuleList(kept))
    layers.train(blocks.training)
    setattr(model.get_submodule(parent) if parent else model, attr, layers)
    config = model.config
    for a in _DEPTH_ATTRS:
        if isinstance(getattr(config, a, None), int):
            setattr(config, a, len(kept))
    for key in PER_LAYER_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, (list, tuple)) and len(value) == depth:
            setattr(config, key, [v for i, v in enumerate(value) if i not in set(removed)])
    return removed
