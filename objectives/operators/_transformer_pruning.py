"""Structured pruning of transformer encoders: whole attention heads and FFN neurons.

Torch-Pruning's dependency graph finds, for the heads of one self-attention block, every
coupled tensor (query/key/value rows, the output projection's columns) and, for the
neurons of one feed-forward block, the intermediate Linear's rows and the output
Linear's columns. The hidden size is never touched, so embeddings, LayerNorms and
residual connections keep their shapes. Each layer loses ``round(ratio * count)`` of its
heads / neurons (at least one of each is always kept), ranked by the L2 magnitude of
the whole coupled group — a deterministic function of the weights and the ratios.

Supported: Hugging Face encoders whose self-attention modules carry
``num_attention_heads``, ``attention_head_size`` and ``all_head_size`` and own
``query``/``key``/``value`` Linears (BERT, MiniLM, RoBERTa, ELECTRA, …), and whose FFN
input Linear has ``config.intermediate_size`` outputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
from torch import nn

from objectives._errors import TaskError
from objectives._task import Inputs

_ATTN_ATTRS = ("num_attention_heads", "attention_head_size", "all_head_size")


def attention_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """``(name, module)`` of every self-attention block the pruner understands."""
    for name, m in model.named_modules():
        # Linear or already quantized (int8 dynamic) projections.
        if all(hasattr(m, a) for a in _ATTN_ATTRS) and all(
            isinstance(getattr(m, p, None), nn.Module) for p in ("query", "key", "value")
        ):
            yield name, m


def ffn_modules(model: nn.Module) -> list[nn.Linear]:
    """The FFN input Linears (``hidden → intermediate``) of a Hugging Face encoder."""
    config = getattr(model, "config", None)
    size = getattr(config, "intermediate_size", None)
    hidden = getattr(config, "hidden_size", None)
    if size is None or hidden is None:
        return []
    return [
        m for m in model.modules()
        if isinstance(m, nn.Linear) and m.out_features == size and m.in_features == hidden
    ]


def is_transformer(model: nn.Module) -> bool:
    """Whether ``model`` has self-attention blocks this module can prune."""
    return next(attention_modules(model), None) is not None


def _logits_sum(out: object) -> torch.Tensor:
    if hasattr(out, "logits"):
        return out.logits.sum()
    if isinstance(out, (tuple, list)):
        return out[0].sum()
    return out.sum()  # type: ignore[union-attr]


def _removed(count: int, ratio: float) -> int:
    return max(0, min(count - 1, int(round(ratio * count))))


def prune_transformer(
    model: nn.Module,
    example_inputs: Inputs,
    *,
    attn_ratio: float = 0.0,
    ffn_ratio: float = 0.0,
) -> nn.Module:
    """Remove ``attn_ratio`` of each layer's heads and ``ffn_ratio`` of its FFN neurons.

    Works in place and returns ``model``; the attention modules' ``num_attention_heads``
    and ``all_head_size`` are updated so the pruned model runs. ``model.config`` keeps
    the original sizes (it describes the architecture the weights came from); use
    ``objectives.save_pretrained_compressed`` to write a directory that reloads.

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
            f"ffn_prune_ratio={ffn_ratio:g} needs a Hugging Face encoder with "
            f"config.intermediate_size and {type(model).__name__} has none; "
            "fix ffn_prune_ratio at 0 for this task"
        )
    import torch_pruning as tp

    model.eval()
    importance = tp.importance.GroupMagnitudeImportance(p=2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = tp.DependencyGraph().build_dependency(
                model, example_inputs=example_inputs, output_transform=_logits_sum
            )
            with torch.no_grad():
                if attn_ratio > 0.0:
                    for _, m in attn:
                        _prune_heads(graph, importance, m, attn_ratio)
                if ffn_ratio > 0.0:
                    for lin in ffn:
                        n = lin.out_features
                        k = _removed(n, ffn_ratio)
                        if k == 0:
                            continue
                        imp = _group_importance(graph, importance, lin, n)
                        drop = torch.argsort(imp)[:k].tolist()
                        graph.get_pruning_group(
                            lin, tp.prune_linear_out_channels, idxs=sorted(drop)
                        ).prune()
    except TaskError:
        raise
    except Exception as exc:  # torch-pruning raises many types on unsupported graphs
        raise TaskError(
            f"transformer pruning failed for {type(model).__name__}: "
            f"{type(exc).__name__}: {exc}; fix attn_prune_ratio and ffn_prune_ratio at 0"
        ) from exc
    return model


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
