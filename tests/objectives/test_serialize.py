from __future__ import annotations

import pytest
import torch
from torch import nn

from objectives import TaskError, load_weights, quantize, save_weights


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
        assert {f.get_tensor(k).dtype for k in f.keys()} <= {
            torch.int8, torch.float32, torch.float64, torch.int64
        }
