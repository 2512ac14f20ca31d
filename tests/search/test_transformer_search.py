"""A search over a Hugging Face text task on Ray, and its recipe applied as a model directory."""

from __future__ import annotations

import pytest
import torch

from objectives import evaluate_metric, forward, load_pretrained_compressed
from search import Recipe, Search, load_front
from spaces import SearchSpace
from tests.objectives.tiny_bert import tiny_bert_dir, tiny_text_task


@pytest.fixture(scope="module")
def text_task(tmp_path_factory):
    return tiny_text_task(tiny_bert_dir(tmp_path_factory.mktemp("tiny-bert")))


def test_transformer_preset_search_and_apply_writes_a_loadable_directory(
    ray_session, text_task, tmp_path
):
    from transformers import AutoTokenizer

    space = (
        SearchSpace.preset("transformer")
        .narrow("learning_rate", low=5e-4, high=3e-3)
        .fix("prune_vocab", True)
        .fix("embed_bits", 8)
        .narrow("quant_bits", choices=[32, 8])
    )
    url = f"sqlite:///{tmp_path / 'study.db'}"
    front = Search(
        text_task, space, storage=url, study_name="tiny-text", n_trials=4,
        max_concurrent_trials=2, max_accuracy_drop=0.05, seed=1, progress=False,
    ).run()
    assert len(front) >= 1
    for point in front:
        assert point.test_accuracy is not None
        assert point.params["prune_vocab"] is True
    front, info = load_front(url, "tiny-text")
    recipe = Recipe.from_front(front, info, prefer="size")
    assert recipe.compression.prune_vocab is True
    assert Recipe.load(recipe.save(tmp_path / "r.yaml")) == recipe

    out = tmp_path / "model"
    applied = recipe.apply(text_task, out)
    assert applied.result.accuracy == pytest.approx(recipe.metrics.accuracy, abs=1e-6)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "slimsearch.json", "model.safetensors", "tokenizer.json",
            "recipe.yaml", "metrics.json"} <= names
    model = load_pretrained_compressed(out)
    tok = AutoTokenizer.from_pretrained(str(out))
    assert len(tok) < text_task.teacher.config.vocab_size
    from objectives.tasks import generate_reviews

    texts, _ = generate_reviews(900, seed=5)
    enc = tok(texts[600:750], padding="max_length", truncation=True, max_length=24,
              return_tensors="pt")
    logits = forward(model, dict(enc))
    acc = float((logits.argmax(-1) == text_task.val.labels).float().mean())
    assert acc == pytest.approx(applied.result.accuracy, abs=1e-6)
    assert acc == pytest.approx(evaluate_metric(applied.model, text_task.val, text_task))
    assert torch.isfinite(logits).all()
