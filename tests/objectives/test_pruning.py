"""Pruning on every model family users bring: each unit pruned once, or a clear refusal.

The family tasks (tests/objectives/families.py) are small but really trained models; each
test compares the pruned student's shapes with the teacher's, layer by layer, and runs it.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from objectives import (
    CompressionConfig,
    TaskError,
    accuracy,
    evaluate,
    forward,
    prune_structured,
    pruned_copy,
)
from tests.objectives.families import CLASSES, FAMILIES, ResNetProj, images


@pytest.fixture(scope="module")
def family():
    """Build each family task at most once for this module."""
    built: dict[str, object] = {}

    def get(name: str):
        if name not in built:
            built[name] = FAMILIES[name]()
        return built[name]

    return get


def _halved(c: int) -> int:
    return c - round(0.5 * c)


def _modules(model: nn.Module, kind: type) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, kind)}


def _runs(model: nn.Module, task) -> None:
    with torch.no_grad():
        out = forward(model.eval(), task.val.inputs)
    assert out.shape == (len(task.val.labels), CLASSES)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["resnet", "depthwise"])
def test_cnn_channels_are_halved_once_with_bn_and_depthwise_groups(family, name):
    task = family(name)
    student = pruned_copy(task, CompressionConfig(prune_ratio=0.5))
    before = _modules(task.teacher, nn.Conv2d)
    after = _modules(student, nn.Conv2d)
    assert before.keys() == after.keys()
    for n, conv in after.items():
        assert conv.out_channels == _halved(before[n].out_channels), n
        if before[n].groups > 1:  # depthwise: one filter per channel, coupled to its input
            assert conv.groups == conv.in_channels == conv.out_channels, n
    depthwise = [c for c in after.values() if c.groups > 1]
    assert len(depthwise) == (2 if name == "depthwise" else 0)
    # every BatchNorm follows the conv it normalises
    for n, bn in _modules(student, nn.BatchNorm2d).items():
        teacher_bn = dict(task.teacher.named_modules())[n]
        assert bn.num_features == _halved(teacher_bn.num_features), n
        assert bn.running_mean.shape == (bn.num_features,)
    head = student.head
    assert head.out_features == CLASSES  # the output layer keeps its classes
    assert head.in_features == _halved(task.teacher.head.in_features)
    _runs(student, task)


class TupleResNet(ResNetProj):
    """Returns ``(logits, features)``, as many user models (and HF ``return_dict=False``) do."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        x = self.stem(x)
        x = torch.relu(x + self.bn_a(self.conv_a(x)))
        features = self.pool(self.down(x)).flatten(1)
        return self.head(features), features


def test_prune_structured_traces_models_that_return_tuples():
    torch.manual_seed(0)
    model = TupleResNet()
    x = images(8, seed=0).inputs
    prune_structured(model, x, 0.5, ignored_layers=[model.head])
    assert model.down.conv2.out_channels == 32
    assert model.down.shortcut[0].out_channels == 32
    assert model.conv_a.out_channels == 16
    logits, features = model(x)
    assert logits.shape == (8, CLASSES) and features.shape == (8, 32)


@pytest.mark.parametrize(("name", "kind"), [("lstm", "LSTM"), ("gru", "GRU")])
def test_recurrent_hidden_units_are_refused_before_any_work(family, name, kind):
    task = family(name)
    msg = (
        f"prune_ratio=0.5 cannot prune the hidden units of rnn (nn.{kind}): Torch-Pruning "
        "cannot trace a recurrent layer's outputs to their consumers, so only the layers "
        "around it would shrink; fix prune_ratio at 0 for this task"
    )
    with pytest.raises(TaskError) as err:
        pruned_copy(task, CompressionConfig(prune_ratio=0.5))
    assert str(err.value) == msg
    assert "\n" not in str(err.value)


def test_gpt2_ffn_is_halved_once(family):
    task = family("gpt2")
    student = pruned_copy(task, CompressionConfig(ffn_prune_ratio=0.5))
    for block in student.transformer.h:
        assert block.mlp.c_fc.out_features == 128  # 4 * n_embd = 256 → 128
        assert block.mlp.c_proj.in_features == 128
        assert block.mlp.c_proj.out_features == 64  # the hidden size is never cut
        assert block.attn.c_attn.out_features == 192
    _runs(student, task)


def test_llama_gated_mlp_is_halved_once_not_twice(family):
    task = family("llama")
    student = pruned_copy(task, CompressionConfig(ffn_prune_ratio=0.5))
    for layer in student.model.layers:
        mlp = layer.mlp
        assert mlp.gate_proj.out_features == 96  # 192 → 96, not 48
        assert mlp.up_proj.out_features == 96
        assert mlp.down_proj.in_features == 96
        assert (layer.self_attn.q_proj.out_features, layer.self_attn.k_proj.out_features) == (
            64, 32,
        )
    assert student.config.intermediate_size == 192  # the config keeps the original sizes
    _runs(student, task)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_decoders_refuse_prune_ratio_and_head_pruning(family, name):
    task = family(name)
    with pytest.raises(TaskError, match=r"^prune_ratio=0.5 prunes MLP/CNN channels .*"
                       r"search attn_prune_ratio and ffn_prune_ratio instead"):
        pruned_copy(task, CompressionConfig(prune_ratio=0.5))
    cls = type(task.teacher).__name__
    with pytest.raises(TaskError) as err:
        pruned_copy(task, CompressionConfig(attn_prune_ratio=0.5, ffn_prune_ratio=0.5))
    assert str(err.value) == (
        f"attn_prune_ratio=0.5 cannot prune the attention heads of {cls}: head pruning "
        "supports BERT-style encoders (query/key/value projections) only for now; "
        "fix attn_prune_ratio at 0"
    )


def test_int4_rounds_pruned_mlp_widths_to_multiples_of_32(digits_task):
    plain = pruned_copy(digits_task, CompressionConfig(prune_ratio=0.3))
    int4 = pruned_copy(digits_task, CompressionConfig(prune_ratio=0.3, quant_bits=4))
    widths = [m.out_features for m in int4.modules() if isinstance(m, nn.Linear)]
    plain_widths = [m.out_features for m in plain.modules() if isinstance(m, nn.Linear)]
    # Torch-Pruning keeps int(n * 0.7): 512 → 358, 256 → 179; int4 rounds down to 32s
    assert plain_widths == [358, 179, 10]
    assert widths == [352, 160, 10]


@pytest.mark.parametrize(
    ("name", "mlp_attr", "width"), [("gpt2", "c_fc", 160), ("llama", "up_proj", 128)]
)
def test_int4_rounds_ffn_widths_to_multiples_of_32(family, name, mlp_attr, width):
    task = family(name)
    student = pruned_copy(task, CompressionConfig(ffn_prune_ratio=0.3, quant_bits=4))
    # gpt2: 256 - round(76.8) = 179 → 160; llama: 192 - round(57.6) = 134 → 128
    lins = [getattr(m, mlp_attr) for m in student.modules() if hasattr(m, mlp_attr)]
    assert len(lins) == 2
    assert all(lin.out_features == width for lin in lins)
    # far past the rounding step, a block still keeps one group of 32 rather than none
    tiny = pruned_copy(task, CompressionConfig(ffn_prune_ratio=0.95, quant_bits=4))
    assert all(getattr(m, mlp_attr).out_features == 32 for m in tiny.modules()
               if hasattr(m, mlp_attr))
    _runs(student, task)


@pytest.mark.parametrize(("name", "config"), [
    ("resnet", CompressionConfig(prune_ratio=0.5)),
    ("llama", CompressionConfig(ffn_prune_ratio=0.5)),
])
def test_pruned_and_distilled_students_stay_close_to_the_teacher(family, name, config):
    task = family(name)
    with torch.no_grad():
        teacher = accuracy(forward(task.teacher.eval(), task.val.inputs), task.val.labels)
    assert teacher > 0.6  # the family really learned its task
    result = evaluate(task, config)
    assert result.accuracy >= teacher - 0.10, (result.accuracy, teacher)
