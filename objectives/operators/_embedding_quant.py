"""int8 embeddings: per-row symmetric quantization of ``nn.Embedding`` tables.

In small BERTs the word-embedding table holds about half the parameters; int8 storage
cuts it 4x. A lookup gathers int8 rows and rescales only those rows, so the cost at
run time is negligible and the stored weights are honestly one byte per element plus
one scale per row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from objectives._errors import TaskError


class QuantizedEmbedding(nn.Module):
    """An ``nn.Embedding`` stored as int8 rows with one float scale per row.

    Attributes (buffers, saved by ``save_weights``):
        weight_int8: ``(num_embeddings, embedding_dim)`` int8 values.
        weight_scale: ``(num_embeddings, 1)`` float scales; row ``i`` is
            ``weight_int8[i] * weight_scale[i]``.
    """

    def __init__(
        self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None
    ) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.register_buffer(
            "weight_int8", torch.zeros(num_embeddings, embedding_dim, dtype=torch.int8)
        )
        self.register_buffer("weight_scale", torch.ones(num_embeddings, 1))

    @classmethod
    def from_float(cls, emb: nn.Embedding) -> QuantizedEmbedding:
        """Quantize ``emb``'s weights (symmetric, per row, to [-127, 127])."""
        w = emb.weight.detach().float()
        scale = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127.0
        q = cls(emb.num_embeddings, emb.embedding_dim, emb.padding_idx)
        q.weight_int8.copy_(torch.round(w / scale).clamp(-127, 127).to(torch.int8))
        q.weight_scale.copy_(scale)
        return q

    def dequantize(self) -> torch.Tensor:
        """The float table this module represents."""
        return self.weight_int8.to(self.weight_scale.dtype) * self.weight_scale

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(input_ids, self.weight_int8)
        scales = F.embedding(input_ids, self.weight_scale)
        return rows.to(scales.dtype) * scales

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8"


def quantize_embeddings(model: nn.Module, bits: int) -> nn.Module:
    """Replace every ``nn.Embedding`` of ``model`` by a ``QuantizedEmbedding`` (bits=8).

    ``bits == 32`` returns ``model`` untouched. Works in place and returns ``model``.

    Raises:
        TaskError: for another bit-width, or ``bits == 8`` on a model without embeddings.
    """
    if bits == 32:
        return model
    if bits != 8:
        raise TaskError(f"embed_bits={bits!r} is not supported; allowed: 32, 8")
    targets = [
        (name, m) for name, m in model.named_modules() if type(m) is nn.Embedding
    ]
    if not targets:
        raise TaskError(
            f"embed_bits=8 quantizes nn.Embedding tables and {type(model).__name__} has none; "
            "fix embed_bits at 32 for this task"
        )
    for name, emb in targets:
        parent, _, attr = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, attr, QuantizedEmbedding.from_float(emb))
    return model
