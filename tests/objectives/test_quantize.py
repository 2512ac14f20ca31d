from __future__ import annotations

import pytest
import torch
from torch import nn

from objectives import (
    MODEL_FILE,
    CompressionConfig,
    TaskError,
    compress,
    dynamic_int8_modules,
    evaluate,
    evaluate_metric,
    forward,
    is_int4_weight,
    load_compressed,
    load_weights,
    quantize,
    save_weights,
)
from objectives._serialize import _plain_tensors
from tests.objectives.families import FAMILIES

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LSTM, nn.GRU)
ACCURACY_TOLERANCE = 0.03  # int8 may cost at most 3 points of val accuracy vs fp32


def weight_names(model: nn.Module) -> set[str]:
    """``<module path>.<param name>`` of every weight matrix/kernel of the float model's
    Linear/conv/LSTM/GRU layers (Hugging Face ``Conv1D`` counts as Linear)."""
    names = set()
    for mod_name, m in model.named_modules():
        if isinstance(m, WEIGHT_LAYERS) or type(m).__name__ == "Conv1D":
            prefix = f"{mod_name}." if mod_name else ""
            names |= {f"{prefix}{n}" for n, p in m.named_parameters(recurse=False)
                      if n.startswith("weight")}
    return names


def stored_as(tensors: dict[str, torch.Tensor], suffix: str) -> set[str]:
    return {k.removesuffix(suffix) for k in tensors if k.endswith(suffix)}


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 96), nn.ReLU(),
                         nn.Linear(96, 10)).eval()


def test_int4_file_is_smaller_than_int8_and_reloads_exactly(tmp_path):
    x = torch.randn(8, 64)
    int8 = save_weights(quantize(_mlp(), 8), tmp_path / "int8.safetensors")
    q4 = quantize(_mlp(), 4)
    int4 = save_weights(q4, tmp_path / "int4.safetensors")
    assert int4 < 0.75 * int8
    fresh = quantize(_mlp(), 4)
    for p in fresh.parameters():
        if is_int4_weight(p):
            p.qdata.zero_()
    load_weights(fresh, tmp_path / "int4.safetensors")
    assert torch.equal(fresh(x), q4(x))
    assert (fresh(x) - _mlp()(x)).abs().max() < 0.2  # int4 stays close to fp32


def test_edge_bits_keep_first_and_last_layers_at_higher_precision():
    model = quantize(_mlp(), 4, edge_bits=8)
    dyn = dynamic_int8_modules()
    assert isinstance(model[0], dyn) and isinstance(model[4], dyn)
    assert is_int4_weight(model[2].weight)
    fp32_edges = quantize(_mlp(), 8, edge_bits=32)
    assert type(fp32_edges[0]) is nn.Linear and type(fp32_edges[4]) is nn.Linear
    assert isinstance(fp32_edges[2], dyn)
    # edges at no higher precision than the rest: quantized like the rest
    assert isinstance(quantize(_mlp(), 8, edge_bits=8)[0], dyn)


def test_int4_trial_end_to_end(digits_task, tmp_path):
    cfg = CompressionConfig(prune_ratio=0.25, quant_bits=4, edge_bits=8)
    result = evaluate(digits_task, cfg, output_dir=tmp_path)
    int8 = evaluate(digits_task, CompressionConfig(prune_ratio=0.25, quant_bits=8))
    assert result.size_bytes < int8.size_bytes
    assert result.latency_ms > 0
    model = load_compressed(digits_task, cfg, tmp_path / MODEL_FILE)
    assert evaluate_metric(model, digits_task.val, digits_task) == pytest.approx(result.accuracy)


def test_unsupported_quantization_is_a_task_error():
    for bits in (8, 4):
        with pytest.raises(TaskError, match=r"Embedding has none.*remove") as info:
            quantize(nn.Embedding(10, 4), bits)
        assert "nn.Linear, nn.Conv1d/2d/3d, nn.LSTM or nn.GRU" in str(info.value)
        assert "\n" not in str(info.value)
        with pytest.raises(TaskError, match="calibration=task.calibration_inputs"):
            quantize(nn.Sequential(nn.Conv2d(1, 4, 3)), bits)
        with pytest.raises(TaskError, match="ConvTranspose2d '0'.*remove"):
            quantize(nn.Sequential(nn.ConvTranspose2d(1, 4, 3), nn.Flatten(), nn.Linear(4, 2)),
                     bits, calibration=torch.randn(4, 1, 3, 3))
    with pytest.raises(TaskError, match="CPU only"):
        quantize(_mlp(), 4, device="cuda")
    with pytest.raises(TaskError, match="not supported"):
        quantize(_mlp(), 2)


# ------------------------------------------------------------------- every family, int8
@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request, tmp_path_factory):
    """One trained family task with its fp32 and int8 trials, the int8 model and reload."""
    task = FAMILIES[request.param]()
    fp32 = evaluate(task, CompressionConfig(quant_bits=32))
    cfg = CompressionConfig(quant_bits=8)
    out = tmp_path_factory.mktemp(f"int8-{request.param}")
    int8 = evaluate(task, cfg, output_dir=out)
    model, _ = compress(task, cfg)
    reloaded = load_compressed(task, cfg, out / MODEL_FILE)
    return request.param, task, fp32, int8, model, reloaded


def test_int8_covers_every_weight_layer_of_every_family(family):
    name, task, fp32, int8, model, _ = family
    tensors = _plain_tensors(model)
    expected = weight_names(task.teacher)
    assert expected, name
    # every Linear/conv/LSTM/GRU weight is stored int8 exactly once, none left fp32
    assert stored_as(tensors, ".int8") == expected, name
    assert not expected & set(tensors), name
    for key in expected:
        assert tensors[f"{key}.int8"].dtype == torch.int8
        assert tensors[f"{key}.scale"].dtype == torch.float32
        assert tensors[f"{key}.zero_point"].dtype == torch.int8
    assert int8.size_bytes <= 0.35 * fp32.size_bytes, (name, int8.size_bytes / fp32.size_bytes)
    assert int8.accuracy >= fp32.accuracy - ACCURACY_TOLERANCE, (name, fp32.accuracy, int8.accuracy)
    # ... and the trial records it: coverage of the weights at 8 bits, nothing left above.
    assert int8.quant_coverage is not None and int8.quant_coverage >= 0.9, name
    assert int8.uncovered_layers == (), name
    assert fp32.quant_coverage == 1.0 and int8.params_before == fp32.num_parameters


def test_int8_model_reloads_to_the_same_logits(family):
    name, task, _, int8, model, reloaded = family
    x = task.val.inputs
    with torch.no_grad():
        assert torch.equal(forward(model, x), forward(reloaded, x)), name
    assert evaluate_metric(reloaded, task.val, task) == pytest.approx(int8.accuracy)


class Branchy(nn.Module):
    """Data-dependent control flow: FX cannot trace it, so its convs go the eager way."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        if float(y.mean()) > -1.0:  # always true, but not traceable
            y = torch.relu(self.dw(y))
        return self.head(y.mean(dim=(2, 3)))


def test_untraceable_conv_model_is_int8_under_its_own_names(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(64, 1, 8, 8)
    float_model = Branchy().eval()
    with torch.no_grad():
        ref = float_model(x)
    model = quantize(float_model, 8, calibration=x)
    tensors = _plain_tensors(model)
    assert stored_as(tensors, ".int8") == {"conv.weight", "dw.weight", "head.weight"}
    assert {"conv.input.scale", "conv.output.scale", "dw.input.zero_point"} <= set(tensors)
    with torch.no_grad():
        assert (model(x) - ref).abs().max() < 0.05
    save_weights(model, tmp_path / "m.safetensors")
    torch.manual_seed(1)  # other weights, other calibration: everything must come from the file
    fresh = quantize(Branchy().eval(), 8, calibration=torch.randn(16, 1, 8, 8) * 3)
    load_weights(fresh, tmp_path / "m.safetensors")
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))


# ----------------------------------------------------------------------------- int4
def test_int4_groups_adapt_so_no_linear_stays_fp32(tmp_path):
    torch.manual_seed(0)
    # in_features 40 -> groups of 20, 45 -> 15, 37 (prime) -> one group per row
    model = nn.Sequential(nn.Linear(40, 45), nn.ReLU(), nn.Linear(45, 37), nn.ReLU(),
                          nn.Linear(37, 5)).eval()
    x = torch.randn(8, 40)
    with torch.no_grad():
        ref = model(x)
    q = quantize(model, 4)
    tensors = _plain_tensors(q)
    assert stored_as(tensors, ".int4") == {"0.weight", "2.weight", "4.weight"}
    assert [tuple(tensors[f"{i}.weight.scale"].shape)[-1] for i in (0, 2, 4)] == [2, 3, 1]
    with torch.no_grad():
        assert (q(x) - ref).abs().max() < 0.2
    save_weights(q, tmp_path / "q.safetensors")
    fresh = quantize(nn.Sequential(nn.Linear(40, 45), nn.ReLU(), nn.Linear(45, 37), nn.ReLU(),
                                   nn.Linear(37, 5)).eval(), 4)
    load_weights(fresh, tmp_path / "q.safetensors")
    with torch.no_grad():
        assert torch.equal(fresh(x), q(x))


def test_int4_convs_and_rnns_fall_back_to_int8():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    tensors = _plain_tensors(quantize(conv, 4, calibration=torch.randn(8, 1, 8, 8)))
    assert stored_as(tensors, ".int8") == {"0.weight"}
    assert stored_as(tensors, ".int4") == {"2.weight"}
    rnn = quantize(nn.Sequential(nn.GRU(8, 16)), 4)
    assert stored_as(_plain_tensors(rnn), ".int8") == {"0.weight_ih_l0", "0.weight_hh_l0"}


def test_int4_every_linear_and_pruned_int4_is_smaller_than_int8():
    from objectives.tasks import digits

    task = digits(finetune_epochs=1)
    cfg4 = CompressionConfig(prune_ratio=0.3, quant_bits=4)
    model, _ = compress(task, cfg4)
    tensors = _plain_tensors(model)
    assert stored_as(tensors, ".int4") == weight_names(task.teacher)
    int4 = evaluate(task, cfg4)
    int8 = evaluate(task, CompressionConfig(prune_ratio=0.3, quant_bits=8))
    assert int4.size_bytes < int8.size_bytes


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_int4_transformer_has_no_fp32_linear(name):
    task = FAMILIES[name]()
    model, _ = compress(task, CompressionConfig(quant_bits=4))
    tensors = _plain_tensors(model)
    assert stored_as(tensors, ".int4") == weight_names(task.teacher)
    # After pruning (widths rounded to the int4 group), int4 still beats int8 on size.
    int4 = evaluate(task, CompressionConfig(ffn_prune_ratio=0.3, quant_bits=4))
    int8 = evaluate(task, CompressionConfig(ffn_prune_ratio=0.3, quant_bits=8))
    assert int4.quant_coverage == 1.0 and int8.quant_coverage == 1.0
    assert int4.size_bytes < int8.size_bytes, (int4.size_bytes, int8.size_bytes)
    assert not weight_names(task.teacher) & set(tensors)


def test_int8_dynamic_leaves_the_callers_model_unchanged():
    from objectives.operators._linear_quant import int8_dynamic

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = int8_dynamic(model, {"0"})
    assert out is not model and type(model[0]) is torch.nn.Linear
    assert type(out[0]) is not torch.nn.Linear
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
