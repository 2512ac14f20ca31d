"""Vocabulary pruning: keep only the embedding rows of tokens the task's data uses.

A Hugging Face tokenizer knows ~30k tokens; a task's training data uses a few thousand.
``prune_vocabulary`` replaces the word-embedding table by one holding only the kept
rows, behind a ``RemappedEmbedding`` that maps original token ids to the new rows
(ids that were dropped map to the unknown token). The model therefore still accepts
the original tokenizer's ids during the search. When a compressed model is exported
(``save_pretrained_compressed``), the map is folded into the tokenizer instead: the
exported vocabulary lists the kept tokens in their new order, so the exported model
is a plain embedding over a smaller vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from objectives._errors import TaskError


class RemappedEmbedding(nn.Module):
    """An embedding over a pruned vocabulary, indexed by the original token ids.

    Attributes:
        token_map: ``(original_vocab,)`` int32 buffer: original id → row of ``embedding``.
        embedding: The pruned table (``nn.Embedding`` or a quantized one).
        unk_id: The original id of the unknown token, whose row dropped ids share.
    """

    def __init__(self, token_map: torch.Tensor, embedding: nn.Module, unk_id: int) -> None:
        super().__init__()
        self.register_buffer("token_map", token_map.to(torch.int32))
        self.embedding = embedding
        self.unk_id = int(unk_id)

    @property
    def weight(self) -> torch.Tensor:
        """The pruned table's weight (for code that inspects ``.weight``)."""
        return self.embedding.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.token_map[input_ids].long())

    def kept_ids(self) -> torch.Tensor:
        """Original ids of the kept tokens, in their new order (row 0, 1, …)."""
        rows = self.embedding.num_embeddings
        out = torch.full((rows,), -1, dtype=torch.long)
        token_map = self.token_map.long()
        unk_row = int(token_map[self.unk_id])
        # Every kept row but the unknown token's has exactly one original id mapping to
        # it; dropped ids share the unknown token's row, which belongs to unk_id.
        ids = torch.arange(token_map.numel())
        mask = token_map != unk_row
        out[token_map[mask]] = ids[mask]
        out[unk_row] = self.unk_id
        return out


def used_token_ids(inputs: object, key: str = "input_ids") -> set[int]:
    """The distinct token ids in ``inputs[key]`` (a mapping of tensors)."""
    if not isinstance(inputs, dict) or key not in inputs:
        raise TaskError(
            f"prune_vocab needs the task's inputs to be a mapping with {key!r} "
            "(a Hugging Face text task); fix prune_vocab at false for this task"
        )
    return set(torch.unique(inputs[key]).tolist())


def prune_vocabulary(model: nn.Module, keep: Iterable[int], *, unk_id: int) -> nn.Module:
    """Shrink ``model``'s input embedding to the ids in ``keep`` (plus ``unk_id``).

    Kept ids get new rows in ascending order of their original id; every other id maps
    to ``unk_id``'s row. Works in place and returns ``model``.

    Raises:
        TaskError: if the model has no ``get_input_embeddings()`` table, or an id is
            out of the vocabulary.
    """
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    if not isinstance(emb, nn.Embedding):
        raise TaskError(
            f"prune_vocab needs a Hugging Face model with an nn.Embedding input table; "
            f"{type(model).__name__} has none; fix prune_vocab at false for this task"
        )
    vocab = emb.num_embeddings
    ids = sorted(set(int(i) for i in keep) | {int(unk_id)})
    if ids[0] < 0 or ids[-1] >= vocab:
        raise TaskError(f"token ids {ids[0]}..{ids[-1]} fall outside the vocabulary of {vocab}")
    kept = torch.tensor(ids, dtype=torch.long)
    token_map = torch.full((vocab,), ids.index(int(unk_id)), dtype=torch.int32)
    token_map[kept] = torch.arange(len(ids), dtype=torch.int32)
    padding = emb.padding_idx
    new_padding = int(token_map[padding]) if padding is not None and padding in ids else None
    small = nn.Embedding(len(ids), emb.embedding_dim, padding_idx=new_padding)
    with torch.no_grad():
        small.weight.copy_(emb.weight[kept])
    model.set_input_embeddings(RemappedEmbedding(token_map, small, int(unk_id)))
    return model


def unwrap_vocabulary(model: nn.Module) -> torch.Tensor | None:
    """Fold a ``RemappedEmbedding`` back into a plain table; return the kept ids.

    After this the model takes *new* ids (row numbers), so the tokenizer must be
    remapped with the returned ids (see ``remap_tokenizer``). Returns None and leaves
    the model alone when its vocabulary was not pruned.
    """
    get = getattr(model, "get_input_embeddings", None)
    emb = get() if callable(get) else None
    if not isinstance(emb, RemappedEmbedding):
        return None
    kept = emb.kept_ids()
    model.set_input_embeddings(emb.embedding)
    return kept
