"""Attention-head pruning of decoder LMs, aware of grouped-query attention.

Applies to Llama-family attention (Llama, Mistral, Qwen, …): modules with ``q_proj``,
``k_proj``, ``v_proj``, ``o_proj`` and a ``head_dim``. With grouped-query attention
(``n_rep = heads / kv_heads > 1``) a KV head serves ``n_rep`` query heads, so a KV group
goes with its query heads: every group loses ``removed_units(ratio, n_rep)`` of its
query heads (``objectives.operators._ratio``: ``ceil(ratio · n_rep)``, at least one for
any positive ratio, at least one head kept) — the same number in each group, so the model
stays a GQA model the config can describe — and the KV heads stay. With multi-head
attention (``n_rep == 1``) ``removed_units(ratio, heads)`` whole heads go (query, key
and value rows and output columns). A positive ratio therefore always removes heads; a
one-head MHA layer cannot lose one and is refused. Heads are ranked within their group by
the squared L2 norm of their weights (query rows and output columns; plus key and value
rows for whole heads); every layer loses the same count, and the config's
``num_attention_heads`` / ``num_key_value_heads`` (with an explicit ``head_dim``) are
updated so ``save_pretrained`` / ``from_pretrained`` rebuild it. The new projections keep
the origin tag of the ones they replace (``carry_origin``), so a later ``bit_budget``
allocation matches them to the teacher layer they came from.

Adapter note (checked against transformers 5.24.0, ``models/llama/modeling_llama.py``):
besides the projections' shapes, ``LlamaAttention.forward`` reads the module attributes
``head_dim`` (the reshape) and ``num_key_value_groups`` (``repeat_kv``), which were set
from the config at construction; this module rewrites ``num_key_value_groups`` (and
leaves ``head_dim``, which pruning does not change). ``tests/objectives/test_causal_lm.py``
compares a pruned model with one freshly built from the rewritten config, so a new
attribute transformers caches at construction fails that test instead of decoding wrong.

GPT-2 is refused: its fused ``c_attn`` could be cut, but its config derives the head size
from ``n_embd / n_head``, so a pruned head count cannot be saved or reloaded.
"""
from __future__ import annotations

import torch
from torch import nn

from objectives._errors import TaskError
from objectives.operators._conv1d import carry_origin
from objectives.operators._ratio import removed_units

_PROJ = ("q_proj", "k_proj", "v_proj", "o_proj")


def gqa_attention_modules(model: nn.Module) -> list[nn.Module]:
    """The Llama-family attention modules of ``model`` (see module docstring)."""
    return [
        m for m in model.modules()
        if all(isinstance(getattr(m, p, None), nn.Linear) for p in _PROJ)
        and isinstance(getattr(m, "head_dim", None), int)
    ]


def refuse_decoder_heads(model: nn.Module, ratio: float) -> None:
    """Raise (one line) if ``attn_prune_ratio=ratio`` cannot apply to a decoder ``model``."""
    if ratio <= 0.0 or gqa_attention_modules(model):
        return
    if any(type(m).__name__ == "GPT2Attention" for m in model.modules()):
        raise TaskError(
            f"attn_prune_ratio={ratio:g} cannot prune GPT-2's heads: its config derives the "
            "head size from n_embd / n_head, so a pruned head count cannot be saved or "
            "reloaded; fix attn_prune_ratio at 0 and search ffn_prune_ratio and "
            "depth_prune_ratio"
        )


def _select_rows(lin: nn.Linear, rows: torch.Tensor) -> nn.Linear:
    new = nn.Linear(lin.in_features, int(rows.numel()), bias=lin.bias is not None,
                    dtype=lin.weight.dtype, device=lin.weight.device)
    with torch.no_grad():
        new.weight.copy_(lin.weight[rows])
        if lin.bias is not None:
            new.bias.copy_(lin.bias[rows])
    new.train(lin.training)
    return carry_origin(lin, new)


def _select_cols(lin: nn.Linear, cols: torch.Tensor) -> nn.Linear:
    new = nn.Linear(int(cols.numel()), lin.out_features, bias=lin.bias is not None,
                    dtype=lin.weight.dtype, device=lin.weight.device)
    with torch.no_grad():
        new.weight.copy_(lin.weight[:, cols])
        if lin.bias is not None:
            new.bias.copy_(lin.bias)
    new.train(lin.training)
    return carry_origin(lin, new)


def _rows_of(heads: list[int], d: int) -> torch.Tensor:
    return torch.tensor([h * d + i for h in heads for i in range(d)], dtype=torch.long)


@torch.no_grad()
def prune_decoder_heads(model: nn.Module, ratio: float) -> int:
    """Remove ``ratio`` of every layer's attention heads in place; return heads left per layer.

    Raises:
        TaskError: ``model`` has no Llama-family attention (GPT-2 and others: see
            ``refuse_decoder_heads``), or the layers disagree on their head counts.
    """
    refuse_decoder_heads(model, ratio)
    modules = gqa_attention_modules(model)
    if ratio <= 0.0 or not modules:
        return 0
    config = model.config
    d = int(modules[0].head_dim)
    shapes = {(m.q_proj.out_features // d, m.k_proj.out_features // d) for m in modules}
    if len(shapes) != 1:
        raise TaskError(f"attention layers disagree on their head counts {sorted(shapes)}; "
                        "fix attn_prune_ratio at 0")
    heads, kv = shapes.pop()
    rep = heads // kv
    if rep > 1:
        keep_rep = rep - removed_units(ratio, rep, setting="attn_prune_ratio",
                                       unit="query heads of a KV group")
    else:
        n_keep = heads - removed_units(ratio, heads, setting="attn_prune_ratio",
                                       unit="attention heads")
    kept_heads = 0
    for m in modules:
        q = m.q_proj.weight.view(heads, d, -1)
        o = m.o_proj.weight.view(m.o_proj.out_features, heads, d)
        score = q.pow(2).sum((1, 2)) + o.pow(2).sum((0, 2))
        if rep > 1:
            keep: list[int] = []
            for g in range(kv):
                group = list(range(g * rep, (g + 1) * rep))
                best = sorted(group, key=lambda h: (-float(score[h]), h))[:keep_rep]
                keep.extend(sorted(best))
            keep_kv = list(range(kv))
        else:
            k = m.k_proj.weight.view(heads, d, -1)
            v = m.v_proj.weight.view(heads, d, -1)
            score = score + k.pow(2).sum((1, 2)) + v.pow(2).sum((1, 2))
            keep = sorted(sorted(range(heads), key=lambda h: (-float(score[h]), h))[:n_keep])
            keep_kv = keep
            m.k_proj = _select_rows(m.k_proj, _rows_of(keep_kv, d))
            m.v_proj = _select_rows(m.v_proj, _rows_of(keep_kv, d))
        m.q_proj = _select_rows(m.q_proj, _rows_of(keep, d))
        m.o_proj = _select_cols(m.o_proj, _rows_of(keep, d))
        m.num_key_value_groups = len(keep) // len(keep_kv)  # adapter: see module docstring
        kept_heads = len(keep)
        kept_kv = len(keep_kv)
    config.head_dim = d
    config.num_attention_heads = kept_heads
    config.num_key_value_heads = kept_kv
    return kept_heads
