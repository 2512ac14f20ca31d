"""``CompressionConfig``: everything one trial needs to know about how to compress.

Which values a field may take is not decided here: every field is checked against its
entry in ``spaces.CATALOG``, the one place that states each parameter's bounds and
allowed values (a search space is checked against the same entry). This module decides
only the fields' Python types and their defaults.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from spaces import CATALOG

# Parameters with a closed set of values are typed as that set (so "8" or 8.5 is refused
# as it is by a Literal); the set itself is the catalog's.
QuantBits = Literal[CATALOG["quant_bits"].allowed]  # Literal[32, 16, 8, 4]
EdgeBits = Literal[CATALOG["edge_bits"].allowed]  # Literal[0, 8, 32]
EmbedBits = Literal[CATALOG["embed_bits"].allowed]  # Literal[32, 8]

_ILLEGAL = "{name}: {reason}"


class CompressionConfig(BaseModel):
    """The settings of one compression run: prune → distil → quantize.

    Every field has a default, so a search that does not vary a parameter still gets
    a complete config. Unknown keys are an error, not a silent default. A value outside
    the field's ``spaces.CATALOG`` entry is a ``pydantic.ValidationError`` whose message
    names the field and the values it allows (``quant_bits: 3 is not supported; allowed:
    one of 32, 16, 8, 4``).

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
        depth_prune_ratio: Fraction of decoder layers removed, those of lowest block
            influence on calibration rows (Hugging Face decoders only; > 0 on another
            model is a ``TaskError``).
        prune_vocab: Keep only the embedding rows of tokens the training data uses
            (text tasks only; True on another task is a ``TaskError``).
        embed_bits: 32 keeps embedding tables fp32; 8 stores them int8 per row (a model
            without ``nn.Embedding`` tables raises ``TaskError`` for 8).
        bit_budget: 0 (off) or the effective bits per weight element the ``nn.Linear``
            layers may take: each layer is stored at fp32, bf16, int8 or int4, the
            allocation with the least measured sensitivity within the budget
            (``objectives.operators._allocation``). Replaces ``edge_bits`` (0), and
            ``quant_bits`` becomes the *base* the rest of the model runs in: 32 (fp32) or
            16 (the whole model bf16; each layer bf16, int8 or int4, the last two
            computed in fp32 islands).
        latency_budget: 0 (off) or, with ``bit_budget``, the allocated layers' time as a
            fraction of their time at fp32, from the per-layer timing table measured on
            this hardware (e.g. 1.0: no slower than fp32 in sum; 0.8: 20 % faster). Where
            no allocation within ``bit_budget`` is that fast, the fastest one is taken.
        latency_saving: 0 (off) to 1: with ``bit_budget``, the share of the time the
            allocation could save at that size (from the same timing table) that it must
            save — 0 the least sensitive allocation, 1 the fastest one, between them the
            least sensitive allocation at most ``T_least − latency_saving · (T_least −
            T_fastest)``. Relative to what this size can reach on this hardware, so every
            value means something where ``latency_budget``'s shares of fp32 do not (on a
            CPU where every quantized layer is slower than fp32, any share below 1 is
            unreachable). Not together with ``latency_budget``.
        layer_bits: The per-layer precisions themselves (layer name → 32, 16, 8 or 4), as a
            trial chose them under ``bit_budget``; not searched. A recipe carries them so
            it re-applies exactly that allocation; None: chosen from ``bit_budget``.

    Example:
        >>> CompressionConfig(prune_ratio=0.5, quant_bits=8).quant_bits
        8
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    prune_ratio: float = 0.0
    quant_bits: QuantBits = 32
    edge_bits: EdgeBits = 0
    distill_temperature: float = 4.0
    distill_alpha: float = 0.5
    batch_size: int = 64
    grad_accum_steps: int = 1
    learning_rate: float = 1e-3
    attn_prune_ratio: float = 0.0
    ffn_prune_ratio: float = 0.0
    depth_prune_ratio: float = 0.0
    prune_vocab: bool = False
    embed_bits: EmbedBits = 32
    bit_budget: float = 0.0
    latency_budget: float = 0.0
    latency_saving: float = 0.0
    layer_bits: dict[str, int] | None = None

    @field_validator(*CATALOG, mode="wrap")
    @classmethod
    def _in_catalog(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        """Parse ``value`` as the field's type, then check it against the catalog entry."""
        name = str(info.field_name)
        spec = CATALOG[name]
        try:
            parsed = handler(value)
        except ValidationError:
            reason = spec.check_value(value) or (
                f"{value!r} is not valid; allowed: {spec.allowed_text()}"
            )
            raise PydanticCustomError(
                "catalog", _ILLEGAL, {"name": name, "reason": reason}
            ) from None
        reason = spec.check_value(parsed)
        if reason is not None:
            raise PydanticCustomError("catalog", _ILLEGAL, {"name": name, "reason": reason})
        return parsed

    @field_validator("layer_bits")
    @classmethod
    def _layer_precisions(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is None:
            return None
        for name, bits in value.items():
            if bits not in (32, 16, 8, 4):
                raise PydanticCustomError(
                    "catalog", "layer_bits: {name}: {bits} is not supported; allowed: one of "
                    "32, 16, 8, 4", {"name": name, "bits": bits},
                )
        return dict(value)

    @model_validator(mode="after")
    def _one_precision_rule(self) -> CompressionConfig:
        """``bit_budget``/``layer_bits`` choose every Linear's precision: quant_bits and
        edge_bits must then not choose one too (a setting that would do nothing)."""
        per_layer = self.bit_budget > 0 or self.layer_bits is not None
        if per_layer and (self.quant_bits not in (32, 16) or self.edge_bits != 0):
            raise PydanticCustomError(
                "catalog",
                "bit_budget: per-layer precision replaces edge_bits and runs on a base of "
                "quant_bits 32 or 16; got quant_bits={q}, edge_bits={e} — set quant_bits to "
                "32 or 16 and edge_bits to 0, or bit_budget to 0",
                {"q": self.quant_bits, "e": self.edge_bits},
            )
        if self.layer_bits is not None and self.bit_budget <= 0:
            raise PydanticCustomError(
                "catalog", "layer_bits: per-layer precisions come from a bit_budget > 0", {}
            )
        for name in ("latency_budget", "latency_saving"):
            if getattr(self, name) > 0 and self.bit_budget <= 0:
                raise PydanticCustomError(
                    "catalog",
                    "{n}: {v} shapes a per-layer allocation, which needs a bit_budget > 0; "
                    "set bit_budget or {n} to 0",
                    {"n": name, "v": getattr(self, name)},
                )
        if self.latency_saving > 0 and self.latency_budget > 0:
            raise PydanticCustomError(
                "catalog",
                "latency_saving and latency_budget both bound the allocation's time; set "
                "one of them to 0 (got latency_saving={s}, latency_budget={b})",
                {"s": self.latency_saving, "b": self.latency_budget},
            )
        return self
