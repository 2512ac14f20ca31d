"""GPT-2's Conv1D projections become exact nn.Linear layers."""

from __future__ import annotations

import torch
from torch import nn

from objectives.operators import linearize_conv1d
from tests.objectives.families import gpt2_classifier, tokens


def test_gpt2_conv1d_become_linear_with_identical_outputs() -> None:
    model = gpt2_classifier().eval()
    batch = tokens(4, seed=0).inputs
    with torch.no_grad():
        before = model(**batch).logits
    n_conv = sum(type(m).__name__ == "Conv1D" for m in model.modules())
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    assert n_conv == 8  # 2 layers x (c_attn, c_proj, c_fc, mlp c_proj)
    out = linearize_conv1d(model)
    assert out is model
    assert not any(type(m).__name__ == "Conv1D" for m in model.modules())
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == n_linear + n_conv
    assert model.transformer.h[0].mlp.c_fc.weight.shape == (256, 64)  # (out, in)
    with torch.no_grad():
        after = model(**batch).logits
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
