"""Structured pruning through Torch-Pruning: channels and hidden neurons really removed."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn

from objectives._errors import TaskError
from objectives._task import Inputs
from objectives.operators._rnn_pruning import plan_recurrent, prune_recurrent


def logits_sum(out: object) -> torch.Tensor:
    """A scalar Torch-Pruning can trace back from: sum of ``.logits``, ``out[0]`` or ``out``.

    Lets models whose forward returns a Hugging Face ``ModelOutput`` or a tuple be traced
    like models that return a tensor.
    """
    if hasattr(out, "logits"):
        return out.logits.sum()
    if isinstance(out, (tuple, list)):
        return logits_sum(out[0])
    return out.sum()  # type: ignore[union-attr]


def prune_structured(
    model: nn.Module,
    example_inputs: Inputs,
    ratio: float,
    *,
    ignored_layers: Sequence[nn.Module] = (),
    round_to: int | None = None,
) -> nn.Module:
    """Remove ``ratio`` of the prunable channels of ``model`` in place and return it.

    Torch-Pruning's dependency graph keeps coupled layers consistent (a Linear's output
    neurons with the next Linear's inputs, a Conv's channels with its BatchNorm and any
    residual additions, including projection shortcuts; a depthwise convolution's
    channels, its ``groups`` included, with the layer that feeds it). Each coupled group
    keeps ``int(n * (1 - ratio))`` of its ``n`` channels (Torch-Pruning's local pruning;
    for even ``n`` and ``ratio=0.5`` that is exactly half), ranked by the group's L2
    magnitude, so the result is a deterministic function of the weights and the ratio.
    ``ratio == 0`` returns ``model`` untouched. The forward may return a tensor, a tuple
    (its first element is traced) or a Hugging Face ``ModelOutput`` (``.logits``).

    Args:
        model: The model to prune in place.
        example_inputs: Inputs one forward of ``model`` accepts (used for tracing).
        ratio: Fraction of each group's channels to remove, in ``[0, 1)``.
        ignored_layers: Modules whose output channels must stay (the classifier head).
        round_to: If set, each group's kept width is rounded *down* to a multiple of it
            (``32`` keeps int4 group quantization applicable). A group whose kept width
            would round down to 0 (fewer than ``round_to`` channels kept) is left at its
            full width.

    Recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``; unidirectional, any number of
    layers, ``batch_first`` or not) lose ``round(ratio * hidden)`` hidden units per layer
    first (see ``objectives.operators._rnn_pruning``), with the input columns of the
    layers that read them; Torch-Pruning then prunes the rest of the model around them,
    except layers that feed a recurrent layer's input, which keep their width.

    Raises:
        TaskError: a recurrent layer that cannot be pruned (bidirectional, or read by
            something other than Linear / recurrent layers) — raised before any work —,
            or Torch-Pruning cannot trace or prune the model.
    """
    if ratio <= 0.0:
        return model
    plans = plan_recurrent(model, ratio)  # refuses before any weight changes
    prune_recurrent(model, ratio, round_to=round_to, plans=plans)
    ignored = list(ignored_layers)
    for plan in plans:  # Torch-Pruning's graph neither follows nor prunes these
        ignored += [plan.rnn, *plan.producers]
    import torch_pruning as tp

    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruner = tp.pruner.BasePruner(
                model,
                example_inputs,
                importance=tp.importance.GroupMagnitudeImportance(p=2),
                pruning_ratio=float(ratio),
                ignored_layers=ignored,
                round_to=round_to,
                output_transform=logits_sum,
            )
            with torch.no_grad():
                pruner.step()
    except Exception as exc:  # torch-pruning raises many types on unsupported graphs
        raise TaskError(
            f"structured pruning failed for {type(model).__name__}: "
            f"{type(exc).__name__}: {exc}; drop prune_ratio from the space or fix it at 0"
        ) from exc
    return model
