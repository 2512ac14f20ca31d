"""Coverage: how much of a compressed model the requested compression really touched.

A trial asks for ``quant_bits`` and pruning ratios; whether they *did* anything depends on
the model in hand (a quantizer that knows only ``nn.Linear`` leaves a CNN's convolutions
fp32). Coverage is measured on the model a trial actually wrote, from the same tensors
``save_weights`` stores, so it cannot disagree with the file:

* **quantization coverage** — of the model's *weight elements* (every weight matrix or
  kernel of two or more dimensions: Linear, convolution, RNN gate matrices; not biases,
  norms or embedding tables, which ``embed_bits`` governs), the fraction stored at the
  requested precision or below. A weight stored as ``<name>.int8`` counts as 8 bits, one
  stored as ``<name>.int4`` as 4 bits, a float tensor as its dtype's width.
* **parameters before / after** — weight elements of the teacher and of the compressed
  model (``count_parameters``), so a pruning ratio that removed little is visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from objectives._serialize import _plain_tensors
from objectives.operators._embedding_quant import QuantizedEmbedding
from objectives.operators._vocab import RemappedEmbedding

_EMBEDDINGS = (nn.Embedding, QuantizedEmbedding, RemappedEmbedding)
_COMPANIONS = (".scale", ".zero_point", ".axis")


@dataclass(frozen=True)
class Coverage:
    """What a requested precision covered in one model.

    Attributes:
        bits: The requested precision (32, 16, 8 or 4).
        fraction: Weight elements stored at ``bits`` or fewer, over all weight elements
            (1.0 for a model without weight matrices, and always for ``bits=32``).
        weight_elements: The number of weight elements counted.
        uncovered: Layer type names (e.g. ``"Conv2d"``) holding weights above ``bits``,
            sorted; empty when everything is covered.
    """

    bits: int
    fraction: float
    weight_elements: int
    uncovered: tuple[str, ...] = ()

    def describe(self) -> str:
        """One phrase: ``"92% of weights at 8 bits (above: Conv2d)"``."""
        text = f"{self.fraction:.0%} of weights at {self.bits} bits"
        return text + (f" (above: {', '.join(self.uncovered)})" if self.uncovered else "")


def _embedding_prefixes(model: nn.Module) -> tuple[str, ...]:
    return tuple(
        f"{name}." if name else "" for name, m in model.named_modules()
        if isinstance(m, _EMBEDDINGS)
    )


def _stored_bits(key: str, tensor: torch.Tensor) -> tuple[str, int, int] | None:
    """``(weight name, bits, elements)`` of one stored tensor, or None if not a weight."""
    if key.endswith(_COMPANIONS):
        return None
    if key.endswith(".int4"):
        return key[: -len(".int4")], 4, 2 * tensor.numel()  # two values per byte
    if key.endswith(".int8"):
        return key[: -len(".int8")], 8, tensor.numel()
    if tensor.dim() < 2:
        return None
    if tensor.is_floating_point():
        return key, torch.finfo(tensor.dtype).bits, tensor.numel()
    return key, tensor.element_size() * 8, tensor.numel()


def _layer_type(model: nn.Module, weight_name: str) -> str:
    module_name = weight_name.rpartition(".")[0]
    try:
        module = model.get_submodule(module_name) if module_name else model
    except AttributeError:
        return module_name or type(model).__name__
    return type(module).__name__


def quantization_coverage(model: nn.Module, bits: int) -> Coverage:
    """The share of ``model``'s weight elements stored at ``bits`` or fewer.

    ``model`` is the compressed model as a trial writes it (after ``quantize``).
    Embedding tables are left out (``embed_bits`` decides them); so are biases and
    normalisation parameters (vectors).
    """
    embeddings = _embedding_prefixes(model)
    total = covered = 0
    uncovered: set[str] = set()
    for key, tensor in _plain_tensors(model).items():
        if embeddings and key.startswith(tuple(p for p in embeddings if p)):
            continue
        stored = _stored_bits(key, tensor)
        if stored is None:
            continue
        name, width, n = stored
        total += n
        if width <= bits:
            covered += n
        else:
            uncovered.add(_layer_type(model, name))
    fraction = 1.0 if total == 0 else covered / total
    return Coverage(bits=bits, fraction=fraction, weight_elements=total,
                    uncovered=tuple(sorted(uncovered)))
