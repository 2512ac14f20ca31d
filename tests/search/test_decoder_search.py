"""A search over a decoder language model on Ray, through the public API, and its recipe
exported as a directory ``AutoModelForCausalLM.from_pretrained`` loads."""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.trial import TrialState

from search import Recipe, Search, load_front
from search.study import ATTR_BASELINE
from spaces import SearchSpace
from tests.objectives.tiny_decoder import tiny_decoder_task


@pytest.fixture(scope="module")
def decoder_task(tiny_llama_dir):
    return tiny_decoder_task(tiny_llama_dir)


def test_decoder_search_front_is_optunas_and_its_recipe_exports(
    ray_session, decoder_task, tmp_path
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    space = (
        SearchSpace.preset("decoder")
        .narrow("quant_bits", choices=[32, 8])
        .fix("embed_bits", 32)
        .narrow("learning_rate", low=2e-4, high=6e-4)
    )
    url = f"sqlite:///{tmp_path / 'study.db'}"
    front = Search(
        decoder_task, space, storage=url, study_name="tiny-decoder", n_trials=4,
        max_concurrent_trials=2, max_accuracy_drop=0.05, seed=2, progress=False,
    ).run()
    study = optuna.load_study(study_name="tiny-decoder", storage=url)
    assert {c.trial for c in front} == {t.number for t in study.best_trials}
    assert len(front) >= 1
    base = study.user_attrs[ATTR_BASELINE]
    assert base["latency_ms"] == base["decode_ms_per_token"] and base["prefill_ms"] > 0
    assert base["perplexity"] > 1
    for c in front:
        assert {"perplexity", "prefill_ms", "decode_ms_per_token", "accuracy_delta",
                "accuracy_delta_se"} <= set(c.attrs)
        assert c.attrs["accuracy_delta"] == pytest.approx(c.accuracy - base["accuracy"])
        # The objective is the decode figure, read relative to the teacher decoding beside
        # it, in the baseline's terms.
        assert c.attrs["latency_raw_ms"] == c.attrs["decode_ms_per_token"]
        assert c.latency_ms == pytest.approx(
            c.attrs["latency_raw_ms"] * base["latency_ms"] / c.attrs["reference_latency_ms"])
    # What depth and head pruning really did is recorded on every trial that asked for it.
    for t in study.trials:
        if t.state == TrialState.COMPLETE and t.params.get("depth_prune_ratio", 0) > 0:
            assert t.user_attrs["layers_removed"] >= 1
        if t.state == TrialState.COMPLETE and t.params.get("attn_prune_ratio", 0) > 0:
            assert 1 <= t.user_attrs["heads_kept"] < decoder_task.teacher.config.num_attention_heads

    front, info = load_front(url, "tiny-decoder")
    recipe = Recipe.from_front(front, info, prefer="size")
    out = tmp_path / "model"
    applied = recipe.apply(decoder_task, out)
    assert applied.result.accuracy == pytest.approx(recipe.metrics.accuracy, abs=1e-6)
    tok = AutoTokenizer.from_pretrained(str(out))
    prompt = tok(["Return a new"], return_tensors="pt")
    if (out / "slimsearch.json").exists():  # quantized: the documented loader
        from objectives import load_pretrained_compressed

        reloaded = load_pretrained_compressed(out)
    else:
        reloaded = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=tok.eos_token_id)
    with torch.no_grad():
        want = getattr(applied.model, "module", applied.model).generate(**prompt, **kwargs)
        got = reloaded.generate(**prompt, **kwargs)
    assert torch.equal(want, got)
