"""Post-training quantization behind one interface: fp32, bf16 weights, int8 dynamic."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from objectives._errors import TaskError


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


def quantize(model: nn.Module, bits: int, *, device: torch.device | str = "cpu") -> nn.Module:
    """Return ``model`` quantized to ``bits`` (32: unchanged, 16: bf16, 8: int8 dynamic).

    int8 uses PyTorch's dynamic quantization of every ``nn.Linear`` (weights int8,
    activations quantized on the fly); other layer types keep fp32. It runs on CPU only.

    Raises:
        TaskError: for an unsupported bit-width, or int8 on a non-CPU device.
    """
    model.eval()
    if bits == 32:
        return model
    if bits == 16:
        return BFloat16Module(model)
    if bits == 8:
        if torch.device(device).type != "cpu":
            raise TaskError(
                f"quant_bits=8 (int8 dynamic) runs on CPU only, not on {device}; "
                "remove 8 from quant_bits choices for GPU searches"
            )
        if not any(isinstance(m, nn.Linear) for m in model.modules()):
            raise TaskError(
                f"quant_bits=8 quantizes nn.Linear layers and {type(model).__name__} has none; "
                "remove 8 from quant_bits choices"
            )
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao deprecation notice; wrapped here
            return quantize_dynamic(model.cpu(), {nn.Linear}, dtype=torch.qint8, inplace=False)
    raise TaskError(f"quant_bits={bits!r} is not supported; allowed: 32, 16, 8")
