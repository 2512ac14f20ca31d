from __future__ import annotations

import pytest
import torch
from torch import nn

from objectives import (
    MODEL_FILE,
    CompressionConfig,
    TaskError,
    dynamic_int8_modules,
    evaluate,
    evaluate_metric,
    is_int4_weight,
    load_compressed,
    load_weights,
    quantize,
    save_weights,
)


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
    conv = nn.Sequential(nn.Conv2d(1, 4, 3))
    for bits in (8, 4):
        with pytest.raises(TaskError, match="has none"):
            quantize(conv, bits)
    with pytest.raises(TaskError, match="CPU only"):
        quantize(_mlp(), 4, device="cuda")
    with pytest.raises(TaskError, match="not supported"):
        quantize(_mlp(), 2)
