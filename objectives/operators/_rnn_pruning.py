"""Hidden-unit pruning of recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``).

Torch-Pruning cannot do this: its graph does not follow a recurrent layer's tuple output
to the layers that read it, its LSTM pruner handles one layer only, and it has no GRU
pruner. Here each layer ``l`` of a recurrent module loses ``round(ratio * hidden)`` of
its hidden units, chosen independently per layer by the L2 norm of everything the unit
owns: its rows of ``weight_ih_l{l}``, ``weight_hh_l{l}`` and both biases (one row per
gate), its column of ``weight_hh_l{l}``, and its input column of the next layer (or, for
the last layer, of every layer that reads the output). Inputs are assumed batched
(3-D), as in training. ``nn.LSTM`` requires one
``hidden_size`` for all layers, so every layer keeps the same count, not the same units.

Who reads the output is found with ``torch.fx``: the output sequence and the final
states may pass through indexing that keeps the last (hidden) dimension, dropout and
element-wise activations, and must end in ``nn.Linear`` layers or another recurrent
layer. Anything else (the model's own output, a reshape, a concatenation) is refused
with a ``TaskError`` naming the layer, before any weight changes.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from objectives._errors import TaskError

if TYPE_CHECKING:
    from torch.fx import GraphModule, Node

_GATES: dict[type[nn.Module], int] = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}
_PASS_MODULES = (
    nn.Dropout, nn.Identity, nn.ReLU, nn.Tanh, nn.GELU, nn.SiLU, nn.Sigmoid, nn.LeakyReLU,
)
_PASS_FUNCTIONS = {
    torch.relu, torch.tanh, torch.sigmoid, nn.functional.relu, nn.functional.gelu,
    nn.functional.silu, nn.functional.dropout, torch.nn.functional.leaky_relu,
}
_PASS_METHODS = {"relu", "tanh", "sigmoid", "contiguous", "clone", "detach"}

_REFUSAL = (
    "prune_ratio={ratio:g} cannot prune the hidden units of {name} (nn.{kind}): {why}; "
    "fix prune_ratio at 0 for this task"
)


def recurrent_modules(model: nn.Module) -> list[tuple[str, nn.RNNBase]]:
    """``(name, module)`` of every ``nn.RNNBase`` layer in ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.RNNBase)]


@dataclass
class _Plan:
    """What one recurrent module's last layer feeds (found before any weight changes)."""

    name: str
    rnn: nn.RNNBase
    consumers: list[nn.Module] = field(default_factory=list)
    producers: list[nn.Module] = field(default_factory=list)


def plan_recurrent(model: nn.Module, ratio: float) -> list[_Plan]:
    """Check that every recurrent layer of ``model`` can be pruned; say what it feeds.

    Pure inspection (a symbolic trace); no weight changes.

    Raises:
        TaskError: one line naming the first layer that cannot be pruned and why.
    """
    rnns = recurrent_modules(model)
    if not rnns or ratio <= 0.0:
        return []

    def refuse(name: str, m: nn.Module, why: str) -> TaskError:
        return TaskError(_REFUSAL.format(ratio=ratio, name=name, kind=type(m).__name__, why=why))

    for name, m in rnns:
        if type(m) not in _GATES:
            raise refuse(name, m, "only nn.LSTM, nn.GRU and nn.RNN are supported")
        if m.bidirectional:
            raise refuse(name, m, "bidirectional layers are not supported")
        if getattr(m, "proj_size", 0):
            raise refuse(name, m, "LSTMs with proj_size are not supported")
    import torch.fx

    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types on dynamic control flow
        name, m = rnns[0]
        raise refuse(
            name, m, f"torch.fx cannot trace {type(model).__name__} ({type(exc).__name__})"
        ) from exc
    plans = []
    for name, m in rnns:
        nodes = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == name]
        if len(nodes) != 1:
            raise refuse(name, m, f"it is called {len(nodes)} times, not once")
        plan = _Plan(name, m)
        why = _follow_outputs(gm, nodes[0], plan.consumers)
        if why is not None:
            raise refuse(name, m, why)
        for consumer in plan.consumers:
            calls = [n for n in gm.graph.nodes
                     if n.op == "call_module" and gm.get_submodule(str(n.target)) is consumer]
            if len(calls) != 1:
                raise refuse(name, m, f"a layer reading it is called {len(calls)} times")
        plan.consumers = list({id(c): c for c in plan.consumers}.values())
        plan.producers = _producers(gm, nodes[0])
        plans.append(plan)
    return plans


def _follow_outputs(gm: GraphModule, rnn_node: Node, consumers: list[nn.Module]) -> str | None:
    """Collect the modules reading the recurrent output; return why not, if they can't be.

    Each carrier is a node whose last dimension is the hidden units, with the number of
    leading dimensions before it (2 for the batched output sequence and for the states,
    ``(layers, batch, hidden)``).
    """
    carriers: list[tuple[Node, int]] = []
    is_lstm = isinstance(gm.get_submodule(str(rnn_node.target)), nn.LSTM)
    for user in rnn_node.users:
        index = user.args[1] if len(user.args) > 1 else None
        if user.op != "call_function" or user.target is not operator.getitem or (
            index not in (0, 1)
        ):
            return f"its output is used by {_describe(user)}"
        if index == 1 and is_lstm:  # (h_n, c_n)
            for s in user.users:
                if s.op != "call_function" or s.target is not operator.getitem or (
                    s.args[1] not in (0, 1)
                ):
                    return f"its state tuple is used by {_describe(s)}"
                carriers.append((s, 2))
        else:
            carriers.append((user, 2))  # the output sequence, or a GRU/RNN's h_n
    seen: set[Node] = set()
    while carriers:
        node, lead = carriers.pop()
        if node in seen:
            continue
        seen.add(node)
        for user in node.users:
            why = _classify(gm, node, lead, user, carriers, consumers)
            if why is not None:
                return why
    return None


def _classify(
    gm: GraphModule, node: Node, lead: int, user: Node, carriers: list[tuple[Node, int]],
    consumers: list[nn.Module],
) -> str | None:
    if user.op == "call_module":
        mod = gm.get_submodule(str(user.target))
        if isinstance(mod, _PASS_MODULES):
            carriers.append((user, lead))
            return None
        if isinstance(mod, (nn.Linear, *_GATES)) and user.args[0] is node:
            consumers.append(mod)
            return None
        return f"its output feeds {user.target} ({type(mod).__name__}), which it cannot narrow"
    if user.op == "call_function" and user.target in _PASS_FUNCTIONS and user.args[0] is node:
        carriers.append((user, lead))
        return None
    if user.op == "call_method" and user.target in _PASS_METHODS:
        carriers.append((user, lead))
        return None
    if user.op == "call_function" and user.target is operator.getitem:
        idx = user.args[1]
        parts = idx if isinstance(idx, tuple) else (idx,)
        if all(isinstance(p, (int, slice)) for p in parts) and len(parts) <= lead:
            # picks steps / batch rows / layers; never reaches the hidden dimension
            carriers.append((user, lead - sum(isinstance(p, int) for p in parts)))
            return None
    if user.op == "output":
        return "its output is the model's output, whose width would change"
    return f"its output is used by {_describe(user)}, which it cannot follow"


def _describe(node: Node) -> str:
    target = node.target
    return f"{getattr(target, '__name__', target)} ({node.op})"


def _producers(gm: GraphModule, rnn_node: Node) -> list[nn.Module]:
    """Layers whose output feeds the recurrent layer's input (through pass-through ops).

    ``prune_structured`` keeps their output width: Torch-Pruning cannot narrow a GRU's
    input and this module does not prune recurrent inputs.
    """
    found: list[nn.Module] = []
    stack = [rnn_node.args[0]]
    while stack:
        node = stack.pop()
        if not hasattr(node, "op"):
            continue
        if node.op == "call_module":
            mod = gm.get_submodule(str(node.target))
            if isinstance(mod, _PASS_MODULES):
                stack.extend(node.args[:1])
            else:
                found.append(mod)
        elif node.op in ("call_function", "call_method"):
            stack.extend(node.args[:1])
    return found


def prune_recurrent(
    model: nn.Module, ratio: float, *, round_to: int | None = None, plans: list[_Plan] | None = None
) -> nn.Module:
    """Remove ``round(ratio * hidden)`` hidden units from every layer of every RNN, in place.

    Args:
        model: The model to prune.
        ratio: Fraction of each layer's hidden units to remove (at least one is kept).
        round_to: If set and ``hidden >= round_to``, the kept count is rounded down to a
            multiple of it, never below ``round_to``; narrower layers are not rounded.
        plans: ``plan_recurrent(model, ratio)``'s result, if already computed.

    Raises:
        TaskError: see ``plan_recurrent``; raised before any weight changes.
    """
    if ratio <= 0.0:
        return model
    plans = plan_recurrent(model, ratio) if plans is None else plans
    with torch.no_grad():
        for plan in plans:
            _prune_one(plan, ratio, round_to)
    return model


def _keep_count(hidden: int, ratio: float, round_to: int | None) -> int:
    keep = hidden - max(0, min(hidden - 1, int(round(ratio * hidden))))
    if round_to and hidden >= round_to:
        keep = max(round_to, keep - keep % round_to)
    return keep


def _rows(keep: torch.Tensor, hidden: int, gates: int) -> torch.Tensor:
    return torch.cat([keep + g * hidden for g in range(gates)])


def _input_weight(mod: nn.Module) -> str:
    """The weight whose columns are ``mod``'s inputs (a Linear's or a first RNN layer's)."""
    return "weight" if isinstance(mod, nn.Linear) else "weight_ih_l0"


def _prune_one(plan: _Plan, ratio: float, round_to: int | None) -> None:
    rnn = plan.rnn
    gates = _GATES[type(rnn)]
    hidden = rnn.hidden_size
    keep_n = _keep_count(hidden, ratio, round_to)
    if keep_n == hidden:
        return
    layers = rnn.num_layers
    kept: list[torch.Tensor] = []
    for layer in range(layers):
        w_ih = getattr(rnn, f"weight_ih_l{layer}")
        w_hh = getattr(rnn, f"weight_hh_l{layer}")
        score = w_ih.view(gates, hidden, -1).pow(2).sum(dim=(0, 2))
        score = score + w_hh.view(gates, hidden, -1).pow(2).sum(dim=(0, 2))
        score = score + w_hh.pow(2).sum(dim=0)
        if rnn.bias:
            for b in ("bias_ih", "bias_hh"):
                score = score + getattr(rnn, f"{b}_l{layer}").view(gates, hidden).pow(2).sum(0)
        readers = (
            [getattr(rnn, f"weight_ih_l{layer + 1}")] if layer + 1 < layers
            else [getattr(c, _input_weight(c)) for c in plan.consumers]
        )
        for w in readers:
            score = score + w.pow(2).sum(dim=0)
        kept.append(torch.argsort(score, descending=True, stable=True)[:keep_n].sort().values)
    for layer, keep in enumerate(kept):
        rows = _rows(keep, hidden, gates).to(getattr(rnn, f"weight_ih_l{layer}").device)
        keep = keep.to(rows.device)
        _set(rnn, f"weight_ih_l{layer}", getattr(rnn, f"weight_ih_l{layer}")[rows])
        _set(rnn, f"weight_hh_l{layer}", getattr(rnn, f"weight_hh_l{layer}")[rows][:, keep])
        if rnn.bias:
            for b in ("bias_ih", "bias_hh"):
                _set(rnn, f"{b}_l{layer}", getattr(rnn, f"{b}_l{layer}")[rows])
        if layer + 1 < layers:
            name = f"weight_ih_l{layer + 1}"
            _set(rnn, name, getattr(rnn, name)[:, keep])
    last = kept[-1]
    for consumer in plan.consumers:
        name = _input_weight(consumer)
        _set(consumer, name, getattr(consumer, name)[:, last.to(getattr(consumer, name).device)])
        if isinstance(consumer, nn.Linear):
            consumer.in_features = keep_n
        else:
            consumer.input_size = keep_n
    rnn.hidden_size = keep_n
    if hasattr(rnn, "flatten_parameters"):
        rnn.flatten_parameters()


def _set(module: nn.Module, name: str, value: torch.Tensor) -> None:
    old = getattr(module, name)
    setattr(module, name, nn.Parameter(value.contiguous().clone(), requires_grad=old.requires_grad))
