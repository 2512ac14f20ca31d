"""``CompressionConfig``: everything one trial needs to know about how to compress."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

QuantBits = Literal[32, 16, 8, 4]
EdgeBits = Literal[0, 8, 32]
EmbedBits = Literal[32, 8]


class CompressionConfig(BaseModel):
    """The settings of one compression run: prune → distil → quantize.

    Every field has a default, so a search that does not vary a parameter still gets
    a complete config. Unknown keys are an error, not a silent default.

    Attributes:
        prune_ratio: Fraction of prunable channels / hidden neurons removed (structured).
        quant_bits: 32 keeps fp32; 16 stores bf16 weights and runs in bf16; 8 applies
            int8 dynamic quantization to every ``nn.Linear``; 4 applies int4 weight-only
            quantization (torchao, groups of 32) to every ``nn.Linear`` (8 and 4: CPU only).
        edge_bits: Mixed precision: keep the first and last ``nn.Linear`` layers at 8 or 32
            bits when ``quant_bits`` is lower; 0 quantizes them like the rest.
        distill_temperature: Softmax temperature of the distillation loss (> 0).
        distill_alpha: Weight of the distillation loss; ``1 - alpha`` weights the
            cross-entropy on hard labels.
        batch_size: Fine-tuning micro-batch size.
        grad_accum_steps: Micro-batches per optimizer step.
        learning_rate: Adam learning rate of the fine-tune.
        attn_prune_ratio: Fraction of each transformer layer's attention heads removed
            (Hugging Face encoders only; > 0 on another model is a ``TaskError``).
        ffn_prune_ratio: Fraction of each transformer layer's FFN neurons removed
            (Hugging Face encoders only; > 0 on another model is a ``TaskError``).
        prune_vocab: Keep only the embedding rows of tokens the training data uses
            (text tasks only; True on another task is a ``TaskError``).
        embed_bits: 32 keeps embedding tables fp32; 8 stores them int8 per row (a model
            without ``nn.Embedding`` tables raises ``TaskError`` for 8).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prune_ratio: float = Field(0.0, ge=0.0, le=0.95)
    quant_bits: QuantBits = 32
    edge_bits: EdgeBits = 0
    distill_temperature: float = Field(4.0, gt=0.0, le=100.0)
    distill_alpha: float = Field(0.5, ge=0.0, le=1.0)
    batch_size: int = Field(64, ge=1, le=4096)
    grad_accum_steps: int = Field(1, ge=1, le=256)
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    attn_prune_ratio: float = Field(0.0, ge=0.0, le=0.95)
    ffn_prune_ratio: float = Field(0.0, ge=0.0, le=0.95)
    prune_vocab: bool = False
    embed_bits: EmbedBits = 32
