"""Post-training quantization behind one interface: fp32, bf16, int8 (static convolutions,
dynamic Linear/LSTM/GRU), int4 weight-only Linear."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from objectives._errors import TaskError
from objectives.operators._allocation import (
    ALLOWED,
    LAYER_BITS,
    allocatable,
    check_base,
    quantize_layer,
    refuse_unallocatable,
    tied_layers,
)
from objectives.operators._conv1d import linearize_conv1d
from objectives.operators._linear_quant import (
    BFloat16Module,
    bf16_linear,
    int4_weight_only,
    int8_dynamic,
    linear_names,
    set_layer,
)
from objectives.operators._quantized_state import canonicalize
from objectives.operators._static_int8 import (
    UNSUPPORTED_CONV_TYPES,
    conv_names,
    quantize_convs_static,
)

if TYPE_CHECKING:
    from objectives._task import Inputs


_LAYER_LIST = "nn.Linear, nn.Conv1d/2d/3d, nn.LSTM or nn.GRU"


def quantize(
    model: nn.Module,
    bits: int,
    *,
    device: torch.device | str = "cpu",
    edge_bits: int = 0,
    calibration: Inputs | None = None,
    layer_bits: Mapping[str, int] | None = None,
) -> nn.Module:
    """Return ``model`` quantized to ``bits`` (or per layer, to ``layer_bits``).

    * 32: unchanged; 16: bf16 weights and compute (``BFloat16Module``);
    * 8: every weight layer int8. Convolutions (``nn.Conv1d/2d/3d``, grouped and
      depthwise too): static int8 — per-channel weights, activations calibrated on
      ``calibration`` (see ``_static_int8``). ``nn.Linear``, ``nn.LSTM``, ``nn.GRU``:
      dynamic int8 (int8 weights, activations quantized on the fly). CPU only.
    * 4: torchao int4 weight-only quantization of every ``nn.Linear``, in groups of 32
      weights per scale (``int4_group_size``: a smaller divisor of the input width, or the
      whole row, when 32 does not divide it). The weights are dequantized on the fly:
      the file is ~1.5x smaller than int8 (digits MLP), but on CPU it runs *slower* than fp32 —
      measured, not assumed (docs/benchmarks.md). int4 has no convolution or LSTM/GRU
      kernels, so those layers fall back to int8 exactly as for ``bits=8``: they are
      stored int8, not int4, and a coverage count at 4 bits does not include them. CPU only.

    Hugging Face ``Conv1D`` layers are first rewritten as ``nn.Linear``
    (``linearize_conv1d``). Embeddings are left alone (``embed_bits`` handles them).
    After quantization the model's quantization parameters are rounded to the dtypes the
    file stores (float32 scales), so the model computes exactly what
    its file reloads to.

    ``edge_bits`` (8 or 32) keeps the first and last ``nn.Linear`` layers at that higher
    precision when ``bits`` is 8 or 4 (mixed precision); 0, or a value not above ``bits``,
    quantizes them like the rest.

    ``layer_bits`` gives each named ``nn.Linear`` its own precision, 32, 16, 8 or 4 (the
    last two stored exactly as above; ``objectives.operators._allocation`` chooses them),
    on a base of ``bits`` 32 or 16: with 32 the model stays fp32 and a 16 layer is a
    ``BFloat16Linear`` (bf16 weight and product, fp32 bias and activations between
    layers); with 16 the whole model runs in bf16 (``BFloat16Module``), a 16 layer is a
    plain bf16 ``nn.Linear`` and a 32, 8 or 4 layer a ``Float32Island`` (cast to fp32 and
    back around it). Every Linear that owns its weight must be named; a tied output
    projection (its weight an embedding's table) may be: at ``bits`` or left out it stays
    tied, at another precision it is stored apart (the embedding keeps the table). A
    model with convolutions or LSTM/GRU layers is refused. Layers at 8 or 4 run on CPU
    only; an allocation of only 32 and 16 runs anywhere.

    Args:
        model: The float model (put in eval mode; may be modified in place).
        bits: 32, 16, 8 or 4.
        device: Where the result runs; 8 and 4 run on CPU only.
        edge_bits: 0, 8 or 32 (see above).
        calibration: Model inputs for static int8 of convolutions (deterministic: use
            ``Task.calibration_inputs``); required when ``model`` has convolutions and
            ``bits`` is 8 or 4.

    Example:
        >>> cnn = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
        >>> q = quantize(cnn, 8, calibration=torch.randn(32, 1, 8, 8))
        >>> q(torch.randn(2, 1, 8, 8)).shape
        torch.Size([2, 4])

    Raises:
        TaskError: for an unsupported bit-width or ``edge_bits``, 8/4 on a non-CPU device,
            a model with no quantizable layer (or a transposed convolution) for 8/4, or
            a model with convolutions and no ``calibration``.
    """
    model.eval()
    if layer_bits is not None:
        return _quantize_per_layer(model, bits, layer_bits, device)
    if bits == 32:
        return model
    if bits == 16:
        return BFloat16Module(model)
    if bits not in (8, 4):
        raise TaskError(f"quant_bits={bits!r} is not supported; allowed: 32, 16, 8, 4")
    if torch.device(device).type != "cpu":
        raise TaskError(
            f"quant_bits={bits} runs on CPU only, not on {device}; "
            f"remove {bits} from quant_bits choices for GPU searches"
        )
    if edge_bits not in (0, 8, 32):
        raise TaskError(f"edge_bits={edge_bits!r} is not supported; allowed: 0, 8, 32")
    model = linearize_conv1d(model).cpu()
    for name, m in model.named_modules():
        if isinstance(m, UNSUPPORTED_CONV_TYPES):
            raise TaskError(
                f"quant_bits={bits} cannot quantize {type(m).__name__} {name!r}: there is no "
                f"int8 kernel for transposed convolutions; remove {bits} from quant_bits "
                "choices for this model"
            )
    names = linear_names(model)
    rnns = [n for n, m in model.named_modules() if isinstance(m, (nn.LSTM, nn.GRU))]
    convs = conv_names(model)
    if not (names or rnns or convs):
        raise TaskError(
            f"quant_bits={bits} quantizes {_LAYER_LIST} layers and {type(model).__name__} "
            f"has none; remove {bits} from quant_bits choices"
        )
    edges = {names[0], names[-1]} if names and edge_bits > bits else set()
    body = set(names) - edges
    model = quantize_convs_static(model, calibration)
    if bits == 8:
        model = int8_dynamic(model, body | set(rnns))
    else:
        model = int8_dynamic(model, set(rnns) | (edges if edge_bits == 8 else set()))
        model = int4_weight_only(model, body)
    return canonicalize(model)


def _quantize_per_layer(
    model: nn.Module, bits: int, layer_bits: Mapping[str, int], device: torch.device | str
) -> nn.Module:
    check_base(bits)
    bad = {n: b for n, b in layer_bits.items() if int(b) not in LAYER_BITS}
    if bad:
        name, b = next(iter(bad.items()))
        raise TaskError(
            f"layer {name!r}: precision {b!r} is not supported; allowed: {ALLOWED}"
        )
    model = linearize_conv1d(model)
    refuse_unallocatable(model)
    names = set(allocatable(model))
    # A tied output projection may be named (stored apart where not at the base
    # precision); one left out stays tied, as recipes written before it was allocated do.
    tied = set(tied_layers(model))
    layer_bits = {n: int(b) for n, b in layer_bits.items() if n not in tied or int(b) != bits}
    if not names <= set(layer_bits) <= names | tied:
        missing = sorted(names - set(layer_bits))
        unknown = sorted(set(layer_bits) - names - tied)
        raise TaskError(
            "per-layer precisions do not match the model's layers"
            + (f"; missing {missing[:3]}" if missing else "")
            + (f"; unknown {unknown[:3]}" if unknown else "")
        )
    low = {n for n, b in layer_bits.items() if int(b) < 16}
    if low and torch.device(device).type != "cpu":
        raise TaskError(
            f"int8/int4 layers run on CPU only, not on {device}; search quant_bits over "
            "[32, 16] for GPU searches"
        )
    if bits == 16:
        return _on_bf16_base(model, layer_bits)
    model = bf16_linear(model, {n for n, b in layer_bits.items() if int(b) == 16})
    if not low:
        return model
    model = int8_dynamic(model.cpu(), {n for n in low if int(layer_bits[n]) == 8})
    model = int4_weight_only(model, {n for n in low if int(layer_bits[n]) == 4})
    return canonicalize(model)


def _on_bf16_base(model: nn.Module, layer_bits: Mapping[str, int]) -> BFloat16Module:
    """``model`` (fp32, checked by ``_quantize_per_layer``) in bf16 with the layers not
    at 16 put back as ``Float32Island`` layers built from their fp32 weights, each
    exactly as ``quantize_layer`` builds it (the layer the allocation measured)."""
    islands = {n: quantize_layer(model.get_submodule(n), int(b), 16)
               for n, b in layer_bits.items() if int(b) != 16}
    for name, island in islands.items():  # fp32 islands run where the model is
        if int(layer_bits[name]) == 32:
            island.to(model.get_submodule(name).weight.device)
    wrapped = BFloat16Module(model)  # casts in place: the islands come after
    for name, island in islands.items():
        set_layer(wrapped.module, name, island)
    return wrapped
