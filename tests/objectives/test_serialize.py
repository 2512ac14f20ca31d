from __future__ import annotations

import pytest
import torch
from torch import nn

from objectives import TaskError, count_parameters, load_weights, quantize, save_weights
from objectives._serialize import _plain_tensors
from tests.objectives.families import DepthwiseCNN, ResNetProj, RNNClassifier


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(1000, 64)
        self.out = nn.Linear(64, 1000, bias=False)
        self.out.weight = self.emb.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.emb(x))


def test_tied_weights_are_stored_once(tmp_path):
    model = Tied()
    size = save_weights(model, tmp_path / "m.safetensors")
    assert size < 1000 * 64 * 4 * 1.1
    fresh = Tied()
    load_weights(fresh, tmp_path / "m.safetensors")
    assert torch.equal(fresh.emb.weight, model.emb.weight)
    assert fresh.out.weight.data_ptr() == fresh.emb.weight.data_ptr()


def test_int8_round_trip_is_exact(tmp_path):
    model = quantize(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)), 8)
    save_weights(model, tmp_path / "q.safetensors")
    fresh = quantize(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)), 8)
    load_weights(fresh, tmp_path / "q.safetensors")
    x = torch.randn(5, 16)
    assert torch.equal(model(x), fresh(x))


def test_structure_mismatch_is_named(tmp_path):
    save_weights(nn.Linear(4, 3), tmp_path / "a.safetensors")
    with pytest.raises(TaskError, match="does not match"):
        load_weights(nn.Linear(4, 5), tmp_path / "a.safetensors")


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    save_weights(nn.Linear(4, 3), path)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(TaskError, match="cannot read weights"):
        load_weights(nn.Linear(4, 3), path)


def test_no_pickle_in_weight_files(tmp_path):
    path = tmp_path / "m.safetensors"
    save_weights(quantize(nn.Sequential(nn.Linear(8, 8)), 8), path)
    assert b"\x80\x04" not in path.read_bytes()[:16]  # not a pickle stream
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} <= {torch.int8, torch.float32, torch.int32}



def _reloads_exactly(build, x: torch.Tensor, calibration: torch.Tensor, path) -> nn.Module:
    """Quantize ``build()``, save it, load the file into a model quantized from other
    weights and calibration data, and check that both compute the same."""
    torch.manual_seed(0)
    model = quantize(build().eval(), 8, calibration=calibration)
    save_weights(model, path)
    torch.manual_seed(1)
    fresh = quantize(build().eval(), 8, calibration=calibration * 2 + 1)
    with torch.no_grad():
        assert not torch.equal(fresh(x), model(x))
    load_weights(fresh, path)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    return model


@pytest.mark.parametrize("build", [ResNetProj, DepthwiseCNN])
def test_static_int8_convs_reload_weights_and_activation_ranges(build, tmp_path):
    x = torch.randn(4, 1, 16, 16)
    model = _reloads_exactly(build, x, torch.randn(32, 1, 16, 16), tmp_path / "c.safetensors")
    tensors = _plain_tensors(model)
    # FX graph mode: BatchNorm folded into the convolutions, which now carry a bias
    assert "stem.0.weight.int8" in tensors and "stem.0.bias" in tensors
    assert tensors["stem.0.weight.scale"].shape == (tensors["stem.0.weight.int8"].shape[0],)
    assert tensors["stem.0.weight.axis"].item() == 0
    assert "stem_0_input_scale_0.scale" in tensors and "stem.0.output.zero_point" in tensors
    # scales and zero points are parameters, not weight elements
    assert count_parameters(model) == sum(
        t.numel() for k, t in tensors.items() if k.endswith((".int8", "bias"))
    )


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_dynamic_int8_rnn_round_trip(cell, tmp_path):
    x = torch.randn(3, 12, 8)
    model = _reloads_exactly(lambda: RNNClassifier(cell), x, x, tmp_path / "r.safetensors")
    tensors = _plain_tensors(model)
    assert {k for k in tensors if k.endswith(".int8")} == {
        f"rnn.weight_{g}_l{i}.int8" for g in ("ih", "hh") for i in (0, 1)
    } | {"head.weight.int8"}
    assert "rnn.bias_ih_l1" in tensors
    assert count_parameters(model) == sum(p.numel() for p in RNNClassifier(cell).parameters())
