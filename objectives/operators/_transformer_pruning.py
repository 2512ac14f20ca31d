"""Structured pruning of transformers: whole attention heads and FFN neurons.

Torch-Pruning's dependency graph finds, for the heads of one self-attention block, every
coupled tensor (query/key/value rows, the output projection's columns) and, for the
neurons of one feed-forward block, every coupled Linear: the intermediate Linear's rows
(both ``gate_proj`` and ``up_proj`` in a gated MLP) and the output Linear's columns.
The hidden size is never touched, so embeddings, LayerNorms and residual connections
keep their shapes. Each layer loses ``round(ratio * count)`` of its heads / neurons (at
least one of each is always kept), ranked by the L2 magnitude of the whole coupled
group — a deterministic function of the weights and the ratios.

Supported: head pruning for Hugging Face encoders whose self-attention modules carry
``num_attention_heads``, ``attention_head_size`` and ``all_head_size`` and own
``query``/``key``/``value`` Linears (BERT, MiniLM, RoBERTa, ELECTRA, …); FFN pruning for
those and for GPT-2 (``c_fc``/``c_proj`` once ``linearize_conv1d`` has run) and
Llama-style gated MLPs (Llama, Mistral, Qwen: ``gate_proj``/``up_proj``/``down_proj``),
found through the config's FFN width (``intermediate_size``, or GPT-2's ``n_inner``).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator

import torch
from torch import nn

from objectives._errors import TaskError
from objectives._task import Inputs
from objectives.operators._pruning import logits_sum

_ATTN_ATTRS = ("num_attention_heads", "attention_head_size", "all_head_size")


def attention_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(name, module)`` of every self-attention block the pruner understands."""
    for name, m in model.named_modules():
        # Linear or already quantized (int8 dynamic) projections.
        if all(hasattr(m, a) for a in _ATTN_ATTRS) and all(
            isinstance(getattr(m, p, None), nn.Module) for p in ("query", "key", "value")
        ):
            yield name, m


_NOT_FFN = frozenset(
    {"query", "key", "value", "q_proj", "k_proj", "v_proj", "c_attn", "qkv_proj", "W_pack"}
)


def ffn_sizes(model: nn.Module) -> tuple[int, int] | None:
    """``(hidden, intermediate)`` from a Hugging Face config, or ``None`` without one.

    ``intermediate_size`` (BERT, Llama, Mistral, Qwen, …) or, for GPT-2 style configs,
    ``n_inner`` (``None`` there means ``4 * hidden``).
    """
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", None)
    if hidden is None:
        return None
    size = getattr(config, "intermediate_size", None)
    if size is None and hasattr(config, "n_inner"):
        size = config.n_inner or 4 * hidden
    if size is None:
        return None
    return int(hidden), int(size)


def ffn_modules(model: nn.Module) -> list[nn.Linear]:
    """The FFN input Linears (``hidden → intermediate``) of a Hugging Face transformer.

    BERT's ``intermediate.dense``, GPT-2's ``c_fc`` (once ``linearize_conv1d`` made it an
    ``nn.Linear``), and both ``gate_proj`` and ``up_proj`` of a gated (Llama-style) MLP:
    those two are one coupled group, which ``prune_transformer`` prunes once. Attention
    projections are never listed, even where their width equals the FFN's.
    """
    sizes = ffn_sizes(model)
    if sizes is None:
        return []
    hidden, size = sizes
    return [
        m for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and m.out_features == size and m.in_features == hidden
        and name.rsplit(".", 1)[-1] not in _NOT_FFN
    ]


def is_transformer(model: nn.Module) -> bool:
    """Whether ``model`` has self-attention blocks this module can prune (BERT-style)."""
    return next(attention_modules(model), None) is not None


def is_hf_transformer(model: nn.Module) -> bool:
    """Whether ``model`` is a Hugging Face transformer (encoder or decoder).

    True for anything holding BERT-style self-attention blocks, or a
    ``transformers.PreTrainedModel`` whose config names attention heads
    (``num_attention_heads``; GPT-2's ``n_head`` maps to it) — so GPT-2, Llama, ViT are
    transformers and Hugging Face CNNs (ResNet, ConvNeXt) are not. Never imports
    ``transformers`` itself.
    """
    if is_transformer(model):
        return True
    tf = sys.modules.get("transformers")
    base = getattr(tf, "PreTrainedModel", None) if tf is not None else None
    if base is None:
        return False
    return any(
        isinstance(m, base)
        and getattr(getattr(m, "config", None), "num_attention_heads", None) is not None
        for m in model.modules()
    )


def _removed(count: int, ratio: float) -> int:
    return max(0, min(count - 1, int(round(ratio * count))))


def _kept(count: int, ratio: float, round_to: int | None) -> int:
    """Units to keep out of ``count``: ``count - round(ratio * count)`` (at least one).

    With ``round_to``, a layer of at least ``round_to`` units keeps a multiple of it,
    rounded down but never below ``round_to``; a narrower layer is pruned unrounded.
    """
    keep = count - _removed(count, ratio)
    if round_to and count >= round_to:
        keep = max(round_to, keep - keep % round_to)
    return keep


def prune_transformer(
    model: nn.Module,
    example_inputs: Inputs,
    *,
    attn_ratio: float = 0.0,
    ffn_ratio: float = 0.0,
    round_to: int | None = None,
) -> nn.Module:
    """Remove ``attn_ratio`` of each layer's heads and ``ffn_ratio`` of its FFN neurons.

    Works in place and returns ``model``; the attention modules' ``num_attention_heads``
    and ``all_head_size`` are updated so the pruned model runs. ``model.config`` keeps
    the original sizes (it describes the architecture the weights came from); use
    ``objectives.save_pretrained_compressed`` to write a directory that reloads.

    Each FFN block is pruned exactly once, as one coupled group: BERT's intermediate
    rows and output columns, GPT-2's ``c_fc`` rows and ``c_proj`` columns, or a gated
    MLP's ``gate_proj`` and ``up_proj`` rows with ``down_proj``'s columns. A block of
    ``n`` neurons keeps ``n - round(ffn_ratio * n)`` (at least one), ranked by the L2
    magnitude of the whole group. Head pruning supports BERT-style encoders only.

    Args:
        model: The transformer to prune in place.
        example_inputs: Inputs one forward accepts (used for tracing).
        attn_ratio: Fraction of each self-attention block's heads to remove.
        ffn_ratio: Fraction of each FFN block's intermediate neurons to remove.
        round_to: If set, each FFN block of at least ``round_to`` neurons keeps a
            multiple of it, rounded down but never below ``round_to`` (``32`` keeps int4
            group quantization applicable); a narrower block is pruned unrounded.

    Raises:
        TaskError: if a ratio is set and the model has no such blocks, or Torch-Pruning
            cannot trace the model.
    """
    if attn_ratio <= 0.0 and ffn_ratio <= 0.0:
        return model
    attn = list(attention_modules(model))
    ffn = ffn_modules(model)
    if attn_ratio > 0.0 and not attn:
        raise TaskError(
            f"attn_prune_ratio={attn_ratio:g} needs Hugging Face self-attention blocks and "
            f"{type(model).__name__} has none; fix attn_prune_ratio at 0 for this task"
        )
    if ffn_ratio > 0.0 and not ffn:
        raise TaskError(
            f"ffn_prune_ratio={ffn_ratio:g} needs a Hugging Face transformer whose config "
            f"gives the FFN width (intermediate_size or n_inner) and {type(model).__name__} "
            "has none; fix ffn_prune_ratio at 0 for this task"
        )
    import torch_pruning as tp

    model.eval()
    importance = tp.importance.GroupMagnitudeImportance(p=2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if attn_ratio > 0.0:
                graph = tp.DependencyGraph().build_dependency(
                    model, example_inputs=example_inputs, output_transform=logits_sum
                )
                with torch.no_grad():
                    for _, m in attn:
                        _prune_heads(graph, importance, m, attn_ratio)
            if ffn_ratio > 0.0:
                _prune_ffn(model, importance, ffn, ffn_ratio, round_to)
    except TaskError:
        raise
    except Exception as exc:  # torch-pruning raises many types on unsupported graphs
        raise TaskError(
            f"transformer pruning failed for {type(model).__name__}: "
            f"{type(exc).__name__}: {exc}; fix attn_prune_ratio and ffn_prune_ratio at 0"
        ) from exc
    return model


def _ffn_block(model: nn.Module, lin: nn.Linear) -> nn.Module:
    """The smallest module around ``lin`` that also holds its output Linear
    (``intermediate → hidden``): GPT-2's / Llama's MLP, BERT's layer."""
    name = next(n for n, m in model.named_modules() if m is lin)
    parts = name.split(".")
    for depth in range(len(parts) - 1, -1, -1):
        block = model.get_submodule(".".join(parts[:depth]))
        if any(
            isinstance(m, nn.Linear) and m.in_features == lin.out_features
            and m.out_features == lin.in_features
            for m in block.modules()
        ):
            return block
    raise TaskError(
        f"the FFN Linear {name} has no output Linear ({lin.out_features} → "
        f"{lin.in_features}) in the model; fix ffn_prune_ratio at 0"
    )


def _prune_ffn(
    model: nn.Module, importance: object, ffn: list[nn.Linear], ratio: float,
    round_to: int | None,
) -> None:
    """Prune each FFN block's coupled group once.

    The dependency graph is traced on the block alone (one ``(1, 2, hidden)`` input),
    since decoders' attention (rotary embeddings, caches) defeats Torch-Pruning's
    whole-model trace. A Linear already in a pruned group (a gated MLP's ``up_proj``
    after its ``gate_proj``) is skipped, so no block is pruned twice.
    """
    import torch_pruning as tp

    done: set[int] = set()
    for lin in ffn:
        if id(lin) in done:
            continue
        n = lin.out_features
        block = _ffn_block(model, lin)
        param = lin.weight
        example = torch.randn(1, 2, lin.in_features, dtype=param.dtype, device=param.device)
        graph = tp.DependencyGraph().build_dependency(
            block, example_inputs=example, output_transform=logits_sum
        )
        group = graph.get_pruning_group(lin, tp.prune_linear_out_channels, idxs=list(range(n)))
        done.update(id(dep.target.module) for dep, _ in group)
        keep = _kept(n, ratio, round_to)
        if keep == n:
            continue
        with torch.no_grad():
            imp = importance(group)  # type: ignore[operator]
            if imp is None or imp.numel() != n:
                raise TaskError(f"cannot rank the FFN neurons of {lin}")
            order = torch.argsort(imp.detach().float().cpu(), stable=True)
            drop = sorted(order[: n - keep].tolist())
            graph.get_pruning_group(lin, tp.prune_linear_out_channels, idxs=drop).prune()
        if lin.out_features != keep:
            raise TaskError(f"FFN pruning left {lin} with {lin.out_features} != {keep} neurons")


def _group_importance(graph: object, importance: object, lin: nn.Linear, n: int) -> torch.Tensor:
    import torch_pruning as tp

    group = graph.get_pruning_group(  # type: ignore[attr-defined]
        lin, tp.prune_linear_out_channels, idxs=list(range(n))
    )
    imp = importance(group)  # type: ignore[operator]
    if imp is None or imp.numel() != n:
        raise TaskError(f"cannot rank the channels of {lin}")
    return imp.detach().float().cpu()


def _prune_heads(graph: object, importance: object, m: nn.Module, ratio: float) -> None:
    import torch_pruning as tp

    heads = int(m.num_attention_heads)
    size = int(m.attention_head_size)
    k = _removed(heads, ratio)
    if k == 0:
        return
    q: nn.Linear = m.query
    imp = _group_importance(graph, importance, q, q.out_features)
    per_head = imp.view(heads, size).mean(dim=1)
    drop = sorted(torch.argsort(per_head)[:k].tolist())
    idxs = [h * size + j for h in drop for j in range(size)]
    graph.get_pruning_group(  # type: ignore[attr-defined]
        q, tp.prune_linear_out_channels, idxs=idxs
    ).prune()
    for lin in (m.query, m.key, m.value):
        if lin.out_features != (heads - k) * size:
            raise TaskError(
                f"head pruning left {lin} inconsistent with {heads - k} heads of size {size}"
            )
    m.num_attention_heads = heads - k
    m.all_head_size = (heads - k) * size
