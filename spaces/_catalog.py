"""The parameters slimsearch knows how to search, with the values each may take.

The catalog is the single place that says which names exist and which values are legal.
Ranges a user writes must sit inside a parameter's bounds; choices must each pass the
parameter's rule (``ParamSpec.check_value``). The trial's config
(``objectives.CompressionConfig``) has one field per entry and checks its values by the
same rule, so a bound changed here changes both.

Defaults for a *dropped* parameter are not decided here: a dropped parameter is simply
not sent to the trial, and the trial's own config supplies its default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class ParamSpec:
    """What one searchable parameter may be.

    Attributes:
        name: The parameter's name, as the trial config spells it.
        kind: ``"float"`` (a range, optionally log-scaled), ``"int"`` (a set of integers)
            or ``"bool"`` (on/off: choices ``[false, true]`` or a fixed value).
        description: One line for help texts.
        low: Smallest legal value (inclusive unless ``low_open``).
        high: Largest legal value (inclusive).
        low_open: Whether ``low`` itself is illegal (e.g. a temperature must be > 0).
        allowed: For ``int`` parameters with a closed set of legal values, that set.
        default_range: The range the default space searches (``float`` parameters).
        default_log: Whether the default range is log-scaled.
        default_choices: The choices the default space searches (``int`` parameters).
    """

    name: str
    kind: Literal["float", "int", "bool"]
    description: str
    low: float
    high: float
    low_open: bool = False
    allowed: tuple[int, ...] | None = None
    default_range: tuple[float, float] | None = None
    default_log: bool = False
    default_choices: tuple[int, ...] | None = None

    def allowed_text(self) -> str:
        """Human-readable statement of the legal values, for error messages."""
        if self.kind == "bool":
            return "true or false"
        if self.allowed is not None:
            return "one of " + ", ".join(str(a) for a in self.allowed)
        kind = "a number" if self.kind == "float" else "an integer"
        lo = f"> {self.low:g}" if self.low_open else f">= {self.low:g}"
        return f"{kind} {lo} and <= {self.high:g}"

    def check_value(self, value: object) -> str | None:
        """Return why ``value`` is illegal for this parameter, or ``None`` if it is legal."""
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"{value!r} is not true/false"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{value!r} is not a number; allowed: {self.allowed_text()}"
        if self.kind == "int" and (isinstance(value, float) and not value.is_integer()):
            return f"{value!r} is not an integer; allowed: {self.allowed_text()}"
        if self.allowed is not None:
            if int(value) not in self.allowed:
                return f"{value!r} is not supported; allowed: {self.allowed_text()}"
            return None
        v = float(value)
        if v != v or (self.low_open and v <= self.low) or v < self.low or v > self.high:
            return f"{value!r} is out of range; allowed: {self.allowed_text()}"
        return None


CATALOG: dict[str, ParamSpec] = {
    spec.name: spec
    for spec in (
        ParamSpec(
            "prune_ratio",
            "float",
            "fraction of channels / hidden neurons removed by structured pruning",
            low=0.0,
            high=0.95,
            default_range=(0.0, 0.8),
        ),
        ParamSpec(
            "quant_bits",
            "int",
            "weight precision after compression: 32 = fp32, 16 = bf16, 8 = int8 dynamic, "
            "4 = int4 weight-only (smaller than int8, slower than fp32 on CPU; opt-in)",
            low=4,
            high=32,
            allowed=(32, 16, 8, 4),
            default_choices=(32, 16, 8),
        ),
        ParamSpec(
            "edge_bits",
            "int",
            "mixed precision: first and last Linear layers kept at 8 or 32 bits when "
            "quant_bits is lower (0 = like the rest; opt-in)",
            low=0,
            high=32,
            allowed=(0, 8, 32),
        ),
        ParamSpec(
            "distill_temperature",
            "float",
            "softmax temperature of the distillation loss",
            low=0.0,
            high=100.0,
            low_open=True,
            default_range=(1.0, 20.0),
            default_log=True,
        ),
        ParamSpec(
            "distill_alpha",
            "float",
            "weight of the distillation loss against the hard-label loss",
            low=0.0,
            high=1.0,
            default_range=(0.0, 1.0),
        ),
        ParamSpec(
            "batch_size",
            "int",
            "fine-tuning micro-batch size",
            low=1,
            high=4096,
            default_choices=(16, 32, 64, 128),
        ),
        ParamSpec(
            "grad_accum_steps",
            "int",
            "micro-batches accumulated per optimizer step",
            low=1,
            high=256,
            default_choices=(1, 2, 4, 8),
        ),
        ParamSpec(
            "learning_rate",
            "float",
            "fine-tuning learning rate (Adam)",
            low=0.0,
            high=1.0,
            low_open=True,
            default_range=(1e-4, 1e-2),
            default_log=True,
        ),
        # Transformer parameters: not in the default space (see PRESETS["transformer"]).
        ParamSpec(
            "attn_prune_ratio",
            "float",
            "fraction of each transformer layer's attention heads removed",
            low=0.0,
            high=0.95,
        ),
        ParamSpec(
            "ffn_prune_ratio",
            "float",
            "fraction of each transformer layer's feed-forward neurons removed",
            low=0.0,
            high=0.95,
        ),
        ParamSpec(
            "depth_prune_ratio",
            "float",
            "fraction of decoder layers removed (lowest block influence on calibration data)",
            low=0.0,
            high=0.95,
        ),
        ParamSpec(
            "prune_vocab",
            "bool",
            "keep only the embedding rows of tokens the training data uses",
            low=0,
            high=1,
        ),
        ParamSpec(
            "embed_bits",
            "int",
            "embedding-table precision: 32 = fp32, 8 = int8 per row",
            low=8,
            high=32,
            allowed=(32, 8),
        ),
        ParamSpec(
            "bit_budget",
            "float",
            "per-layer precision: effective bits per weight of the Linear layers, each "
            "layer at fp32, bf16, int8 or int4 by measured sensitivity (0 = off: quant_bits "
            "for all; quant_bits is then the base the rest of the model runs in: 32 or 16; "
            "32 and above leave the size unbound: every layer may be fp32)",
            low=0.0,
            high=64.0,
        ),
        ParamSpec(
            "latency_budget",
            "float",
            "per-layer precision under bit_budget: the Linear layers' measured time as a "
            "fraction of theirs at fp32 (0 = off; needs bit_budget)",
            low=0.0,
            high=4.0,
        ),
        ParamSpec(
            "latency_saving",
            "float",
            "per-layer precision under bit_budget: the share of the time the allocation "
            "could save at that size that it must save (0 = off: least sensitive; 1 = "
            "fastest; needs bit_budget, not with latency_budget)",
            low=0.0,
            high=1.0,
        ),
    )
}


PRESETS: dict[str, dict[str, object]] = {
    # Hugging Face encoders (BERT, MiniLM, …): heads, FFN neurons, vocabulary and
    # embeddings instead of channel pruning (which would cut the hidden size), and
    # fine-tuning settings in the range transformers train with.
    "transformer": {
        "quant_bits": {"choices": [32, 16, 8]},
        "distill_temperature": {"low": 1.0, "high": 8.0, "log": True},
        "distill_alpha": {"low": 0.3, "high": 1.0},
        "batch_size": {"choices": [16, 32]},
        "learning_rate": {"low": 3e-5, "high": 3e-4, "log": True},
        "attn_prune_ratio": {"low": 0.0, "high": 0.75},
        "ffn_prune_ratio": {"low": 0.0, "high": 0.85},
        "prune_vocab": {"choices": [False, True]},
        "embed_bits": {"choices": [32, 8]},
    },
    # Hugging Face decoder LMs (GPT-2, Llama, Mistral, Qwen, …): Minitron-style width
    # (heads, MLP) pruning recovered by logit distillation, then weight quantization.
    # No channel pruning (it would cut the hidden size) and no vocabulary pruning (the
    # vocabulary is the output).
    "decoder": {
        "quant_bits": {"choices": [32, 16, 8, 4]},
        # Gentler distillation than the encoders' (lower temperature, mostly the teacher's
        # distribution, smaller learning rates): a judgement, not a measured result — no
        # benchmark compares these ranges.
        "distill_temperature": {"low": 1.0, "high": 3.0, "log": True},
        "distill_alpha": {"low": 0.7, "high": 1.0},
        "batch_size": {"choices": [16, 32]},
        "learning_rate": {"low": 5e-5, "high": 8e-4, "log": True},
        "attn_prune_ratio": {"low": 0.0, "high": 0.67},
        "ffn_prune_ratio": {"low": 0.0, "high": 0.75},
        "depth_prune_ratio": {"low": 0.0, "high": 0.75},
        "embed_bits": {"choices": [32, 8]},
    },
}

