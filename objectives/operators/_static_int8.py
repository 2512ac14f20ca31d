"""Static post-training int8 for convolutions: int8 weights *and* int8 activations.

Dynamic quantization (``quantize_dynamic``) has no convolution kernels, so a CNN kept
every convolution fp32. Convolutions get static quantization instead: per-output-channel
symmetric int8 weights, per-tensor activation ranges calibrated on ``calibration`` rows
(``Task.calibration_inputs``: the first 256 train rows — fixed, so calibration is
deterministic and ``skeleton`` rebuilds the same structure), run by the x86 (fbgemm /
onednn) int8 convolution kernels.

Choice, measured on this CPU (AVX2, 1 thread, batch 16 of 32x32 images, width 64, median
of 30 forwards, x86 engine, Linear head dynamic int8; a shared machine, so +-20%):

=======================  ======  =======  ============
model                    fp32    FX int8  eager int8
=======================  ======  =======  ============
residual CNN (proj+BN)   51 ms   23 ms    28 ms
depthwise-separable CNN  10 ms   6.5 ms   15 ms
=======================  ======  =======  ============

(An earlier, more loaded run: residual 125 → 48 ms with x86, 60 ms with the fbgemm
engine; depthwise 95 → 11 / 10 ms. The x86 engine is kept: it dispatches to fbgemm or
onednn per op.)

* **FX graph mode** (``torch.ao.quantization.quantize_fx.prepare_fx/convert_fx`` with
  ``get_default_qconfig_mapping("x86")``) is the first choice: it folds BatchNorm into
  the convolution, fuses ReLU, and keeps the tensor int8 across residual adds and
  pooling, so there are few quantize/dequantize round trips. No ``torch.compile``.
  ``nn.Linear`` (and ``F.linear``) are excluded from the static mapping: they get dynamic
  int8 afterwards, like LSTM/GRU (``_quantize``).
* PT2E (``torchao.quantization.pt2e`` + ``X86InductorQuantizer``) only reaches int8
  kernels through ``torch.compile`` — a compile per trial — so it is not used.
* **Eager fallback** for models FX cannot trace symbolically (data-dependent control flow,
  keyword-argument inputs): each convolution is wrapped as quantize → int8 conv →
  dequantize (``EagerStaticConv``) through torch.ao ``prepare``/``convert``. It works on
  any model, so a convolution never silently stays fp32 — but BatchNorm stays fp32 and
  every convolution pays one quantize/dequantize, so it is slower than FX and, on cheap
  depthwise convolutions, slower than fp32 (table): the file is int8, the speed is not.

Costs: FX returns a ``torch.fx.GraphModule`` (the model class's own methods and
attributes beyond ``forward`` do not survive), and ``prepare_fx`` takes ~5 s on the
residual CNN on this machine (calibration ~0.6 s) — paid by every quantization of a
convolutional model (the trial, the early-stopping probe and ``skeleton``).

Only convolution *modules* (``nn.Conv1d/2d/3d``, grouped and depthwise included) are
covered; ``F.conv*`` calls on raw tensors are left alone, and transposed convolutions are
refused by ``quantize`` (no per-channel int8 kernel).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from objectives._errors import TaskError
from objectives._task import Inputs, forward, take

CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Convolution modules that get static int8."""

UNSUPPORTED_CONV_TYPES: tuple[type[nn.Module], ...] = (
    nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
)
"""Convolutions without a per-channel int8 kernel: ``quantize`` refuses int8/int4 for them."""

_CALIBRATION_BATCH = 32


def _backend() -> str:
    """``x86`` (fbgemm + onednn, per-channel weights) where built in, else ``qnnpack`` (ARM)."""
    return "x86" if "x86" in torch.backends.quantized.supported_engines else "qnnpack"


@contextmanager
def quiet() -> Iterator[None]:
    """Silence torch.ao's deprecation notices (the API is wrapped here, on purpose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def conv_names(model: nn.Module) -> list[str]:
    """Qualified names of the convolution modules of ``model`` that get static int8."""
    return [name for name, m in model.named_modules() if type(m) in CONV_TYPES]


class EagerStaticConv(nn.Module):
    """A convolution run in static int8 inside an otherwise float model.

    ``quant`` quantizes the float input with calibrated per-tensor parameters, ``conv`` is
    the int8 convolution (per-channel weights), ``dequant`` returns a float tensor. The
    file stores it under the wrapped convolution's own name (``_quantized_state``).
    """

    def __init__(self, conv: nn.Module) -> None:
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub

        self.quant = QuantStub()
        self.conv = conv
        self.dequant = DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.conv(self.quant(x)))


def static_int8_modules() -> tuple[type[nn.Module], ...]:
    """Module types static int8 produces (int8 convolutions, fused conv+ReLU included)."""
    from torch.ao.nn.quantized.modules.conv import _ConvNd

    return (_ConvNd,)


def _calibrate(model: nn.Module, calibration: Inputs) -> None:
    rows = (
        int(next(iter(calibration.values())).shape[0])
        if isinstance(calibration, Mapping)
        else int(calibration.shape[0])
    )
    with torch.no_grad():
        for start in range(0, rows, _CALIBRATION_BATCH):
            forward(model, take(calibration, slice(start, start + _CALIBRATION_BATCH)))


def _fx(model: nn.Module, calibration: torch.Tensor) -> nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    mapping = get_default_qconfig_mapping(_backend())
    for kind in (nn.Linear, nn.functional.linear, nn.LSTM, nn.GRU, nn.Embedding,
                 nn.EmbeddingBag):
        mapping.set_object_type(kind, None)
    prepared = prepare_fx(copy.deepcopy(model), mapping, (calibration[:1],))
    _calibrate(prepared, calibration)
    return convert_fx(prepared)


def _eager(model: nn.Module, names: list[str], calibration: Inputs) -> nn.Module:
    from torch.ao.quantization import convert, get_default_qconfig, prepare

    qconfig = get_default_qconfig(_backend())
    for name in names:
        parent, _, attr = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        wrapper = EagerStaticConv(getattr(owner, attr))
        wrapper.qconfig = qconfig
        setattr(owner, attr, wrapper)
    if not names:
        return model
    prepare(model, inplace=True)
    _calibrate(model, calibration)
    convert(model, inplace=True)
    return model


def quantize_convs_static(model: nn.Module, calibration: Inputs | None) -> nn.Module:
    """Return ``model`` with every convolution module in static int8 (see module doc).

    FX graph mode (a ``torch.fx.GraphModule`` is returned) when the model traces
    symbolically on a tensor input, else each convolution wrapped as ``EagerStaticConv``
    in place. Other layers are left as they are (FX may
    also run element-wise ops such as residual adds and pooling in int8 between
    convolutions). Deterministic for a given model and ``calibration``.

    Args:
        model: A float model in eval mode, on CPU, with at least one convolution.
        calibration: Model inputs whose activation ranges set the int8 scales.

    Raises:
        TaskError: ``calibration`` is None.
    """
    names = conv_names(model)
    if not names:
        return model
    if calibration is None:
        raise TaskError(
            f"int8 of convolutions ({type(model.get_submodule(names[0])).__name__} "
            f"{names[0]!r}, ...) is static and needs calibration inputs; pass "
            "calibration=task.calibration_inputs to quantize"
        )
    torch.backends.quantized.engine = _backend()
    with quiet():
        if isinstance(calibration, torch.Tensor):
            try:
                model = _fx(model, calibration)
            except Exception:  # noqa: BLE001 - any FX failure: the eager path works on every model
                pass
        # Convolutions FX did not reach (or every one, when FX was not used) go eager.
        return _eager(model, conv_names(model), calibration)
