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
from tests.objectives.families import (
    CLASSES,
    FAMILIES,
    ResNetProj,
    RNNClassifier,
    images,
    sequences,
)


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


def test_hugging_face_cnns_returning_model_outputs_are_pruned_not_refused():
    from transformers import ResNetConfig, ResNetForImageClassification

    from objectives.operators._transformer_pruning import is_hf_transformer

    torch.manual_seed(0)
    config = ResNetConfig(num_channels=1, hidden_sizes=[16, 32], depths=[1, 1],
                          embedding_size=16, num_labels=CLASSES, layer_type="basic")
    model = ResNetForImageClassification(config).eval()
    assert not is_hf_transformer(model)  # prune_ratio is not refused for it
    before = {n: c.out_channels for n, c in _modules(model, nn.Conv2d).items()}
    x = images(4, seed=0).inputs
    prune_structured(model, x, 0.5, ignored_layers=[model.classifier[1]])
    after = {n: c.out_channels for n, c in _modules(model, nn.Conv2d).items()}
    assert after == {n: _halved(c) for n, c in before.items()}
    assert model(x).logits.shape == (4, CLASSES)


@pytest.mark.parametrize(("name", "gates"), [("lstm", 4), ("gru", 3)])
def test_recurrent_hidden_units_are_halved_in_every_layer(family, name, gates):
    task = family(name)
    student = pruned_copy(task, CompressionConfig(prune_ratio=0.5))
    rnn = student.rnn
    assert rnn.hidden_size == 48 and rnn.num_layers == 2  # 96 → 96 - round(48)
    assert rnn.weight_ih_l0.shape == (gates * 48, 8)  # the input features stay
    for layer in range(2):
        assert getattr(rnn, f"weight_hh_l{layer}").shape == (gates * 48, 48)
        assert getattr(rnn, f"bias_ih_l{layer}").shape == (gates * 48,)
        assert getattr(rnn, f"bias_hh_l{layer}").shape == (gates * 48,)
    assert rnn.weight_ih_l1.shape == (gates * 48, 48)
    assert (student.head.in_features, student.head.out_features) == (48, CLASSES)
    _runs(student, task)


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("batch_first", [True, False])
def test_recurrent_pruning_removes_exactly_the_dead_units(cell, batch_first):
    """Units whose every weight is zero contribute nothing; pruning them changes no output."""
    torch.manual_seed(0)
    model = RNNClassifier("lstm" if cell is nn.LSTM else "gru")
    model.rnn.batch_first = batch_first
    gates = 4 if cell is nn.LSTM else 3
    dead = torch.arange(0, 96, 2)  # every other unit, in every layer
    with torch.no_grad():
        for layer in range(2):
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                p = getattr(model.rnn, f"{kind}_l{layer}")
                p.view(gates, 96, *p.shape[1:])[:, dead] = 0
            getattr(model.rnn, f"weight_hh_l{layer}")[:, dead] = 0
        model.rnn.weight_ih_l1[:, dead] = 0
        model.head.weight[:, dead] = 0
    x = sequences(16, seed=1).inputs
    if not batch_first:
        x = x.transpose(0, 1).contiguous()
    with torch.no_grad():
        before = model(x)
    prune_structured(model, x, 0.5, ignored_layers=[model.head])
    assert model.rnn.hidden_size == 48
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, atol=1e-6, rtol=0)


class Stacked(nn.Module):
    """Linear → LSTM → Linear → head: the layers around the RNN are Torch-Pruning's."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 32)
        self.rnn = nn.LSTM(32, 64, batch_first=True)
        self.rnn2 = nn.GRU(64, 64, batch_first=True)
        self.fc = nn.Linear(64, 32)
        self.head = nn.Linear(32, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(torch.relu(self.embed(x)))
        out, h = self.rnn2(nn.functional.dropout(out, 0.1, self.training))
        return self.head(torch.relu(self.fc(h[-1])))


def test_recurrent_layers_feeding_each_other_and_linears_are_pruned_consistently():
    torch.manual_seed(0)
    model = Stacked()
    x = sequences(8, seed=0).inputs
    prune_structured(model, x, 0.5, ignored_layers=[model.head])
    assert model.embed.out_features == 32  # feeds an RNN input: left at full width
    assert (model.rnn.input_size, model.rnn.hidden_size) == (32, 32)
    assert (model.rnn2.input_size, model.rnn2.hidden_size) == (32, 32)
    assert model.rnn2.weight_ih_l0.shape == (3 * 32, 32)
    assert (model.fc.in_features, model.fc.out_features) == (32, 16)
    assert model.head.in_features == 16
    assert model(x).shape == (8, CLASSES)


class BiGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(8, 16, bidirectional=True, batch_first=True)
        self.head = nn.Linear(32, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


class FlatLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(8, 16, batch_first=True)
        self.head = nn.Linear(16 * 12, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0].flatten(1))


class SlicedGRU(nn.Module):
    """Reads only the first 8 hidden units of the last step: a slice of the hidden dim."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(8, 16, batch_first=True)
        self.head = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1][:, :8])


@pytest.mark.parametrize(("model", "why"), [
    (SlicedGRU, "rnn (nn.GRU): its output is used by getitem (call_function), which it "
     "cannot follow"),
    (BiGRU, "rnn (nn.GRU): bidirectional layers are not supported"),
    (FlatLSTM, "rnn (nn.LSTM): its output is used by flatten (call_method), which it "
     "cannot follow"),
])
def test_recurrent_layers_it_cannot_prune_are_refused_before_any_change(model, why):
    torch.manual_seed(0)
    m = model()
    state = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(TaskError) as err:
        prune_structured(m, sequences(4, seed=0).inputs, 0.5, ignored_layers=[m.head])
    assert str(err.value) == (
        f"prune_ratio=0.5 cannot prune the hidden units of {why}; fix prune_ratio at 0 "
        "for this task"
    )
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in state.items())


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
def test_decoders_refuse_prune_ratio_and_gpt2_head_pruning(family, name):
    task = family(name)
    with pytest.raises(TaskError, match=r"^prune_ratio=0.5 prunes MLP/CNN channels .*"
                       r"search attn_prune_ratio and ffn_prune_ratio instead"):
        pruned_copy(task, CompressionConfig(prune_ratio=0.5))
    if name == "llama":  # grouped-query head pruning: tests/objectives/test_causal_lm.py
        student = pruned_copy(task, CompressionConfig(attn_prune_ratio=0.5))
        assert student.config.num_attention_heads == 2
        _runs(student, task)
        return
    with pytest.raises(TaskError) as err:
        pruned_copy(task, CompressionConfig(attn_prune_ratio=0.5, ffn_prune_ratio=0.5))
    assert str(err.value) == (
        "attn_prune_ratio=0.5 cannot prune GPT-2's heads: its config derives the head size "
        "from n_embd / n_head, so a pruned head count cannot be saved or reloaded; fix "
        "attn_prune_ratio at 0 and search ffn_prune_ratio and depth_prune_ratio"
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
