"""Post-training quantization behind one interface: fp32, bf16, int8 dynamic, int4 weight-only."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from objectives._errors import TaskError
from objectives._imports import import_torchao


class BFloat16Module(nn.Module):
    """Runs a bf16 copy of a model: floating inputs are cast in, logits cast back to fp32."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.to(torch.bfloat16)

    def forward(self, *args: object, **kwargs: object) -> object:
        def cast(x: object) -> object:
            if isinstance(x, torch.Tensor) and x.is_floating_point():
                return x.to(torch.bfloat16)
            return x

        out = self.module(*[cast(a) for a in args], **{k: cast(v) for k, v in kwargs.items()})
        if isinstance(out, torch.Tensor):
            return out.float()
        if hasattr(out, "logits"):
            out.logits = out.logits.float()
        return out


def dynamic_int8_modules() -> tuple[type[nn.Module], ...]:
    """Module types that int8 dynamic quantization produces."""
    from torch.ao.nn.quantized.dynamic import Linear as DynLinear

    return (DynLinear,)


INT4_GROUP_SIZE = 32


def linear_names(model: nn.Module) -> list[str]:
    """Qualified names of the ``nn.Linear`` layers of ``model``, in registration order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def _int8_dynamic(model: nn.Module, names: set[str] | None) -> nn.Module:
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    spec: set | dict = {nn.Linear} if names is None else {n: default_dynamic_qconfig for n in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation notice; wrapped here
        return quantize_dynamic(model.cpu(), spec, dtype=torch.qint8, inplace=False)


def _int4_weight_only(model: nn.Module, names: set[str]) -> nn.Module:
    tq = import_torchao()
    config = tq.IntxWeightOnlyConfig(
        weight_dtype=torch.int4, granularity=tq.PerGroup(INT4_GROUP_SIZE)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tq.quantize_(
            model,
            config,
            filter_fn=lambda m, fqn: isinstance(m, nn.Linear)
            and fqn in names
            and m.in_features % INT4_GROUP_SIZE == 0,
        )
    return model


def is_int4_weight(t: object) -> bool:
    """Whether ``t`` is a torchao int4 weight (int4 values unpacked in int8 storage)."""
    return (
        type(t).__name__ == "IntxUnpackedToInt8Tensor"
        and getattr(t, "target_dtype", None) == torch.int4
    )


def quantize(
    model: nn.Module,
    bits: int,
    *,
    device: torch.device | str = "cpu",
    edge_bits: int = 0,
) -> nn.Module:
    """Return ``model`` quantized to ``bits``.

    * 32: unchanged; 16: bf16 weights and compute (``BFloat16Module``);
    * 8: PyTorch int8 dynamic quantization of ``nn.Linear`` layers (weights int8,
      activations quantized on the fly); other layer types keep fp32. CPU only.
    * 4: torchao int4 weight-only quantization of ``nn.Linear`` layers whose input width
      is a multiple of 32 (groups of 32 weights share a scale; others keep fp32). The
      weights are dequantized on the fly: the file is ~2x smaller than int8, but on CPU
      it runs *slower* than fp32 — measured, not assumed (docs/benchmarks.md). CPU only.

    ``edge_bits`` (8 or 32) keeps the first and last ``nn.Linear`` layers at that higher
    precision when ``bits`` is 8 or 4 (mixed precision); 0, or a value not above ``bits``,
    quantizes them like the rest.

    Raises:
        TaskError: for an unsupported bit-width, a model without ``nn.Linear`` for 8/4,
            or 8/4 on a non-CPU device.
    """
    model.eval()
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
    names = linear_names(model)
    if not names:
        raise TaskError(
            f"quant_bits={bits} quantizes nn.Linear layers and {type(model).__name__} has none; "
            f"remove {bits} from quant_bits choices"
        )
    if edge_bits not in (0, 8, 32):
        raise TaskError(f"edge_bits={edge_bits!r} is not supported; allowed: 0, 8, 32")
    edges = {names[0], names[-1]} if edge_bits > bits else set()
    body = set(names) - edges
    if bits == 8:
        return _int8_dynamic(model, body if edges else None)
    model = model.cpu()
    if edge_bits == 8 and edges:
        model = _int8_dynamic(model, edges)
    return _int4_weight_only(model, body)
