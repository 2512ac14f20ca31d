"""Transformers in a trial: head/FFN pruning, vocabulary pruning, int8 embeddings,
quantization, distillation with dict inputs, and loadable model directories.

Runs on a tiny BERT built from a config (2 layers, hidden 32, 4 heads) with a WordPiece
tokenizer over the generated reviews' words, fine-tuned as the teacher in seconds.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from objectives import (
    MODEL_FILE,
    CompressionConfig,
    QuantizedEmbedding,
    RemappedEmbedding,
    Split,
    Task,
    TaskError,
    count_parameters,
    evaluate,
    evaluate_metric,
    evaluate_teacher,
    forget_teacher_logits,
    forward,
    load_compressed,
    load_pretrained_compressed,
    predict_logits,
    prune_transformer,
    prune_vocabulary,
    pruned_copy,
    quantize_embeddings,
    save_pretrained_compressed,
    teacher_logits_file,
    teacher_train_logits,
)
from objectives.tasks import TextTask, generate_reviews, hf_text_task, read_text_data
from tests.objectives.tiny_bert import tiny_bert_dir, tiny_text_task


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def text_task(bert_dir) -> TextTask:
    return tiny_text_task(bert_dir)


FULL = CompressionConfig(
    attn_prune_ratio=0.5,
    ffn_prune_ratio=0.5,
    prune_vocab=True,
    embed_bits=8,
    quant_bits=8,
    learning_rate=1e-3,
    batch_size=32,
)


def test_task_is_a_text_task_with_fixed_length_token_inputs(text_task):
    assert set(text_task.train.inputs) >= {"input_ids", "attention_mask"}
    assert text_task.train.inputs["input_ids"].shape == (600, 24)
    assert text_task.latency_inputs["input_ids"].shape == (8, 24)
    assert text_task.num_classes == 6
    assert text_task.unk_token_id == 51
    assert set(text_task.special_token_ids) == {0, 51, 52, 53, 54}
    # The teacher was fine-tuned: well above always answering the most common class on
    # its training rows, and above it on validation. A 37k-parameter BERT from scratch
    # learns little of the rule (0.34 train, 0.25 validation here); compressed models held
    # to a teacher that really learned its task: test_minilm.py and
    # test_compressed_decoder_classifier_stays_near_a_teacher_that_learned below.
    def majority(split) -> float:
        return float(torch.bincount(split.labels).max()) / len(split.labels)

    train_acc = evaluate_metric(text_task.teacher, text_task.train, text_task)
    assert train_acc > majority(text_task.train) + 0.1, (train_acc, majority(text_task.train))
    val_acc = evaluate_metric(text_task.teacher, text_task.val, text_task)
    assert val_acc > majority(text_task.val), (val_acc, majority(text_task.val))


def test_teacher_is_cached_and_reloaded(bert_dir, text_task):
    assert tiny_text_task(bert_dir).fingerprint == text_task.fingerprint


def test_heads_and_ffn_are_pruned_per_layer_with_separate_ratios(text_task):
    model = pruned_copy(text_task, CompressionConfig(attn_prune_ratio=0.5, ffn_prune_ratio=0.25))
    for layer in model.bert.encoder.layer:
        att = layer.attention.self
        assert att.num_attention_heads == 2
        assert att.all_head_size == 16
        assert att.query.weight.shape == (16, 32)
        assert att.key.weight.shape == (16, 32)
        assert att.value.weight.shape == (16, 32)
        assert layer.attention.output.dense.weight.shape == (32, 16)
        assert layer.intermediate.dense.weight.shape == (48, 32)
        assert layer.output.dense.weight.shape == (32, 48)
    # Hidden size kept: embeddings and classifier untouched.
    assert model.bert.embeddings.word_embeddings.weight.shape[1] == 32
    assert model.classifier.weight.shape == (6, 32)
    logits = forward(model, text_task.example_inputs)
    assert logits.shape == (2, 6) and torch.isfinite(logits).all()
    # Only attention: FFN untouched; only FFN: heads untouched.
    only_attn = pruned_copy(text_task, CompressionConfig(attn_prune_ratio=0.25))
    assert only_attn.bert.encoder.layer[0].attention.self.num_attention_heads == 3
    assert only_attn.bert.encoder.layer[0].intermediate.dense.out_features == 64
    only_ffn = pruned_copy(text_task, CompressionConfig(ffn_prune_ratio=0.5))
    assert only_ffn.bert.encoder.layer[0].attention.self.num_attention_heads == 4
    assert only_ffn.bert.encoder.layer[0].intermediate.dense.out_features == 32


def test_head_pruning_keeps_the_strongest_heads_deterministically(text_task):
    cfg = CompressionConfig(attn_prune_ratio=0.5, ffn_prune_ratio=0.5)
    a, b = pruned_copy(text_task, cfg), pruned_copy(text_task, cfg)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    # The kept query rows are rows of the teacher's query weight (whole heads).
    teacher_q = text_task.teacher.bert.encoder.layer[0].attention.self.query.weight
    kept_q = a.bert.encoder.layer[0].attention.self.query.weight
    heads = [teacher_q[h * 8 : (h + 1) * 8] for h in range(4)]
    for h in range(2):
        block = kept_q[h * 8 : (h + 1) * 8]
        assert any(torch.equal(block, t) for t in heads)


def test_at_least_one_head_and_neuron_survive(text_task):
    model = pruned_copy(text_task, CompressionConfig(attn_prune_ratio=0.95, ffn_prune_ratio=0.95))
    for layer in model.bert.encoder.layer:
        assert layer.attention.self.num_attention_heads == 1
        assert layer.intermediate.dense.out_features >= 1
    assert torch.isfinite(forward(model, text_task.example_inputs)).all()


def test_vocabulary_pruning_is_exact_on_the_task_data(text_task):
    model = pruned_copy(text_task, CompressionConfig(prune_vocab=True))
    emb = model.get_input_embeddings()
    assert isinstance(emb, RemappedEmbedding)
    used = set(torch.unique(text_task.train.inputs["input_ids"]).tolist())
    kept = sorted(used | {0, 51, 52, 53, 54})
    assert emb.embedding.num_embeddings == len(kept)
    assert emb.kept_ids().tolist() == kept
    assert emb.embedding.num_embeddings < text_task.teacher.config.vocab_size - 250
    # Tokens in the training data keep their embedding: identical logits.
    x = {k: v[:16] for k, v in text_task.train.inputs.items()}
    torch.testing.assert_close(forward(model, x), forward(text_task.teacher, x))
    # A dropped token reads the unknown token's row.
    dropped = text_task.teacher.config.vocab_size - 1
    assert dropped not in used
    assert torch.equal(emb(torch.tensor([dropped])), emb(torch.tensor([51])))
    assert torch.equal(emb(torch.tensor([7])), emb(torch.tensor([51])))  # unused7
    assert torch.equal(emb.kept_ids()[emb.token_map[torch.tensor(sorted(used))].long()],
                       torch.tensor(sorted(used)))


def test_int8_embeddings_are_close_and_four_times_smaller(text_task):
    teacher_emb = text_task.teacher.get_input_embeddings()
    q = QuantizedEmbedding.from_float(teacher_emb)
    ids = torch.arange(teacher_emb.num_embeddings)
    err = (q(ids) - teacher_emb(ids)).abs().max()
    assert err <= teacher_emb.weight.abs().max() / 127
    assert q.weight_int8.dtype == torch.int8
    model = quantize_embeddings(pruned_copy(text_task, CompressionConfig()), 8)
    assert not any(type(m) is nn.Embedding for m in model.modules())
    assert count_parameters(model) == count_parameters(text_task.teacher)


@pytest.fixture(scope="module")
def mlp_task() -> Task:
    torch.manual_seed(0)
    x, y = torch.randn(40, 6), torch.arange(40) % 3
    return Task(
        name="mlp",
        teacher=nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)),
        train=Split(x[:20], y[:20]),
        val=Split(x[20:30], y[20:30]),
        test=Split(x[30:], y[30:]),
        num_classes=3,
    )


def test_settings_a_model_lacks_are_clear_task_errors(text_task, mlp_task):
    digits_task = mlp_task
    with pytest.raises(TaskError, match="attn_prune_ratio"):
        pruned_copy(digits_task, CompressionConfig(attn_prune_ratio=0.5))
    with pytest.raises(TaskError, match="ffn_prune_ratio"):
        pruned_copy(digits_task, CompressionConfig(ffn_prune_ratio=0.5))
    with pytest.raises(TaskError, match="prune_vocab"):
        pruned_copy(digits_task, CompressionConfig(prune_vocab=True))
    with pytest.raises(TaskError, match="embed_bits"):
        pruned_copy(digits_task, CompressionConfig(embed_bits=8))
    with pytest.raises(TaskError, match="attn_prune_ratio and ffn_prune_ratio instead"):
        pruned_copy(text_task, CompressionConfig(prune_ratio=0.3))
    # Defaults leave a non-transformer model alone.
    model = pruned_copy(digits_task, CompressionConfig())
    assert count_parameters(model) == count_parameters(digits_task.teacher)


def test_teacher_logits_are_cached_on_disk_for_dict_inputs(text_task):
    expected = predict_logits(text_task.teacher, text_task.train)
    forget_teacher_logits(text_task)
    first = teacher_train_logits(text_task)
    path = teacher_logits_file(text_task)
    assert path.exists()
    torch.testing.assert_close(first, expected)
    forget_teacher_logits(text_task)
    mtime = path.stat().st_mtime_ns
    second = teacher_train_logits(text_task)
    assert path.stat().st_mtime_ns == mtime  # read back, not recomputed
    assert torch.equal(first, second)
    forget_teacher_logits(text_task, on_disk=True)
    assert not path.exists()
    torch.testing.assert_close(teacher_train_logits(text_task), expected)  # recomputed
    assert path.exists()


@pytest.mark.parametrize("bits", [32, 16, 8])
def test_trial_compresses_a_transformer_and_reloads(text_task, tmp_path, bits):
    cfg = FULL.model_copy(update={"quant_bits": bits})
    base = evaluate_teacher(text_task)
    result = evaluate(text_task, cfg, seed=0, output_dir=tmp_path)
    assert result.size_bytes == (tmp_path / MODEL_FILE).stat().st_size
    # Vocabulary pruning + int8 embeddings + half the heads/FFN; int8 Linears on top.
    assert result.size_bytes < base.size_bytes / (3 if bits == 8 else 2)
    # The 37k-parameter tiny BERT learns little of the rule (val ~0.26 on 6 classes): the
    # student must not fall below its teacher; test_compressed_decoder_classifier_...
    # below holds a compressed transformer to a teacher that really learned its task.
    assert result.accuracy >= base.accuracy - 0.1, (base.accuracy, result.accuracy)
    assert result.num_parameters < 0.6 * base.num_parameters
    assert result.latency.batch_size == 8
    model = load_compressed(text_task, cfg, tmp_path / MODEL_FILE)
    assert evaluate_metric(model, text_task.val, text_task) == pytest.approx(result.accuracy)


@pytest.mark.parametrize("bits", [32, 16, 8])
def test_pretrained_directory_reloads_without_the_task(text_task, tmp_path, bits):
    from transformers import AutoTokenizer

    cfg = FULL.model_copy(update={"quant_bits": bits})
    result = evaluate(text_task, cfg, seed=0, output_dir=tmp_path / "trial")
    trained = load_compressed(text_task, cfg, tmp_path / "trial" / MODEL_FILE)
    out = save_pretrained_compressed(
        trained, tmp_path / "model", tokenizer_dir=text_task.tokenizer_dir,
        quant_bits=bits, embed_bits=cfg.embed_bits,
    )
    structure = json.loads((out / "slimsearch.json").read_text())
    assert set(structure["attention_heads"].values()) == {2}
    vocab = json.loads((out / "config.json").read_text())["vocab_size"]
    assert vocab == trained_vocab(trained) < text_task.teacher.config.vocab_size - 250

    loaded = load_pretrained_compressed(out)
    tok = AutoTokenizer.from_pretrained(str(out))
    texts, _ = generate_reviews(900, seed=5)
    enc = tok(texts[600:750], padding="max_length", truncation=True, max_length=24,
              return_tensors="pt")
    # The remapped tokenizer gives the ids the pruned model maps the original ids to.
    token_map = trained.get_input_embeddings() if bits != 16 else (
        trained.module.get_input_embeddings())
    mapped = token_map.token_map[text_task.val.inputs["input_ids"]].long()
    assert torch.equal(enc["input_ids"], mapped)
    logits = forward(loaded, {k: enc[k] for k in ("input_ids", "attention_mask",
                                                  "token_type_ids")})
    torch.testing.assert_close(logits, forward(trained, text_task.val.inputs))
    acc = float((logits.argmax(-1) == text_task.val.labels).float().mean())
    assert acc == pytest.approx(result.accuracy)


@pytest.mark.parametrize("on", [32, 16])
def test_pretrained_directory_reloads_a_per_layer_allocation(text_task, tmp_path, on):
    """Pruned layers at all four per-layer precisions (bf16 ones too) keep their shapes
    and values through the directory, on an fp32 and on a bf16 base (fp32 islands)."""
    from objectives.operators._allocation import allocatable

    base = FULL.model_copy(update={"quant_bits": on, "bit_budget": 32.0, "prune_vocab": False})
    names = allocatable(pruned_copy(text_task, base))
    bits = {n: (32, 16, 8, 4)[i % 4] for i, n in enumerate(names)}
    cfg = base.model_copy(update={"layer_bits": bits})
    result = evaluate(text_task, cfg, seed=0, output_dir=tmp_path / "trial")
    assert result.layer_bits == bits
    trained = load_compressed(text_task, cfg, tmp_path / "trial" / MODEL_FILE)
    out = save_pretrained_compressed(
        trained, tmp_path / "model", tokenizer_dir=text_task.tokenizer_dir,
        quant_bits=on, embed_bits=cfg.embed_bits, layer_bits=bits,
    )
    structure = json.loads((out / "slimsearch.json").read_text())
    assert set(structure["linears"]) >= set(names)  # bf16 layers' pruned shapes too
    assert not any(n.endswith(".inner") for n in structure["linears"])
    loaded = load_pretrained_compressed(out)

    def layer(model, n):
        return (model.module if on == 16 else model).get_submodule(n)

    kinds = [type(layer(loaded, n)) for n in names]
    assert kinds == [type(layer(trained, n)) for n in names]
    # fp32 base: nn.Linear (fp32, int4), BFloat16Linear, dynamic int8; bf16 base: bf16
    # nn.Linear and Float32Island (around fp32, int8 and int4 layers).
    assert len(set(kinds)) == (3 if on == 32 else 2)
    if on == 16:
        inner = [type(layer(loaded, n).inner) for n, b in bits.items() if b != 16]
        assert inner == [type(layer(trained, n).inner) for n, b in bits.items() if b != 16]
    x = text_task.val.inputs
    torch.testing.assert_close(forward(loaded, x), forward(trained, x))


def test_pretrained_directory_without_vocab_pruning_keeps_the_tokenizer(text_task, tmp_path):
    from transformers import AutoTokenizer

    cfg = CompressionConfig(attn_prune_ratio=0.25, learning_rate=1e-3)
    evaluate(text_task, cfg, output_dir=tmp_path / "trial")
    trained = load_compressed(text_task, cfg, tmp_path / "trial" / MODEL_FILE)
    out = save_pretrained_compressed(trained, tmp_path / "model",
                                     tokenizer_dir=text_task.tokenizer_dir, quant_bits=32)
    loaded = load_pretrained_compressed(out)
    tok = AutoTokenizer.from_pretrained(str(out))
    assert len(tok) == text_task.teacher.config.vocab_size
    torch.testing.assert_close(forward(loaded, text_task.val.inputs),
                               forward(trained, text_task.val.inputs))
    with pytest.raises(TaskError, match="not a slimsearch model directory"):
        load_pretrained_compressed(tmp_path / "trial")


def test_prune_transformer_rejects_models_without_attention():
    mlp = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(TaskError, match="attn_prune_ratio=0.5"):
        prune_transformer(mlp, torch.randn(2, 4), attn_ratio=0.5)
    assert prune_transformer(mlp, torch.randn(2, 4)) is mlp
    with pytest.raises(TaskError, match="prune_vocab"):
        prune_vocabulary(mlp, [0, 1], unk_id=0)


# ------------------------------------------------------------------ task factory
def test_csv_and_jsonl_data(bert_dir, tmp_path):
    texts, labels = generate_reviews(60, seed=9)
    names = ["neg", "pos"]
    csv_file = tmp_path / "train.csv"
    rows = ["sentence,target"] + [f'"{t}",{names[y % 2]}' for t, y in zip(texts, labels)]
    csv_file.write_text("\n".join(rows) + "\n")
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": t, "label": y % 2})
                               for t, y in zip(texts, labels)))
    got_texts, got_labels = read_text_data(csv_file, text_field="sentence", label_field="target")
    assert got_texts == texts and got_labels == [names[y % 2] for y in labels]
    task = hf_text_task(bert_dir, csv_file, text_field="sentence", label_field="target",
                        max_length=16, teacher_epochs=1, split_fractions=(0.25, 0.25))
    assert task.label_names == ("neg", "pos")
    assert (len(task.train), len(task.val), len(task.test)) == (30, 15, 15)
    task2 = hf_text_task(bert_dir, jsonl, jsonl, jsonl, max_length=16, teacher_epochs=1)
    assert task2.num_classes == 2 and len(task2.val) == 60


def test_default_split_carves_confirmation_rows_the_search_never_ranks_on(bert_dir):
    texts, labels = generate_reviews(80, seed=4)
    data = (texts, [y % 2 for y in labels])
    task = hf_text_task(bert_dir, data, max_length=16, teacher_epochs=1)
    # 20 % validation, 15 % test, 15 % confirmation; training keeps half.
    assert (len(task.train), len(task.val), len(task.test)) == (40, 16, 12)
    assert task.confirm is not None and len(task.confirm) == 12
    rows = [task.train, task.val, task.test, task.confirm]
    seen = [{tuple(r.tolist()) for r in split.inputs["input_ids"]} for split in rows]
    assert sum(len(s) for s in seen) == len(set().union(*seen))  # disjoint rows
    two = hf_text_task(bert_dir, data, max_length=16, teacher_epochs=1,
                       split_fractions=(0.2, 0.2))
    assert two.confirm is None and (len(two.val), len(two.test)) == (16, 16)
    for bad in [(0.5, 0.5), (0.2,), (0.0, 0.2, 0.1), (0.2, "x"), (0.2, 0.2, 0.2, 0.1)]:
        with pytest.raises(TaskError, match="split_fractions=.* is not valid"):
            hf_text_task(bert_dir, data, max_length=16, teacher_epochs=1,
                         split_fractions=bad)
    with pytest.raises(TaskError, match="confirm= was given"):
        hf_text_task(bert_dir, data, max_length=16, teacher_epochs=1, confirm=data)


def test_digits_confirmation_rows_leave_validation_and_test_as_they_were():
    from objectives.tasks import digits

    plain, confirmed = digits(), digits(confirm_rows=300)
    assert plain.confirm is None and "confirm_rows" not in plain.spec
    assert torch.equal(plain.val.inputs, confirmed.val.inputs)
    assert torch.equal(plain.test.inputs, confirmed.test.inputs)
    assert len(confirmed.confirm) == 300
    assert len(confirmed.train) == len(plain.train) - 300
    assert confirmed.spec["confirm_rows"] == 300
    counts = torch.bincount(confirmed.confirm.labels, minlength=10)
    assert counts.min() >= 25  # stratified: every digit is confirmed
    with pytest.raises(TaskError, match="confirm_rows=5 is out of range"):
        digits(confirm_rows=5)


def test_bad_text_data_is_one_clear_error(bert_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hi"}\n')
    with pytest.raises(TaskError, match="no 'label' field"):
        hf_text_task(bert_dir, bad, teacher_epochs=1)
    with pytest.raises(TaskError, match="unsupported file type"):
        hf_text_task(bert_dir, tmp_path / "x.parquet", teacher_epochs=1)
    with pytest.raises(TaskError, match="not one of"):
        hf_text_task(bert_dir, (["a", "b"], ["x", "y"]), (["c"], ["z"]), (["d"], ["x"]),
                     label_names=["x", "y"], teacher_epochs=1)
    with pytest.raises(TaskError, match="no config.json"):
        hf_text_task(tmp_path, (["a"], [0]))
    texts, labels = generate_reviews(40, seed=1)
    # The tiny BERT directory's head is random for 2 classes: refuse it as a teacher.
    with pytest.raises(TaskError, match="teacher_epochs > 0"):
        hf_text_task(bert_dir, (texts, [y % 2 for y in labels]))


def trained_vocab(model: nn.Module) -> int:
    inner = getattr(model, "module", model)
    return int(inner.get_input_embeddings().embedding.num_embeddings)


def test_a_model_without_bert_attention_gets_vocab_and_quantization(tmp_path, bert_dir):
    """DistilBERT: no token_type_ids input, no BERT-style attention or intermediate_size."""
    import shutil

    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    for f in bert_dir.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special")):
            shutil.copy(f, tmp_path / f.name)
    vocab = json.loads((bert_dir / "config.json").read_text())["vocab_size"]
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=vocab, dim=32, n_layers=1, n_heads=4, hidden_dim=64,
                              max_position_embeddings=64, num_labels=6, pad_token_id=0)
    DistilBertForSequenceClassification(config).save_pretrained(str(tmp_path))
    task = tiny_text_task(tmp_path, name="tiny_distil", teacher_epochs=2)
    assert set(task.train.inputs) == {"input_ids", "attention_mask"}
    result = evaluate(task, CompressionConfig(prune_vocab=True, embed_bits=8, quant_bits=8,
                                              learning_rate=1e-3))
    assert result.size_bytes < evaluate_teacher(task).size_bytes / 3
    with pytest.raises(TaskError, match="attn_prune_ratio"):
        pruned_copy(task, CompressionConfig(attn_prune_ratio=0.5))


def test_compressed_decoder_classifier_stays_near_a_teacher_that_learned():
    from tests.objectives.families import gpt2_task

    task = gpt2_task()
    base = evaluate_teacher(task)
    assert base.accuracy >= 0.9  # the teacher really learned the rule
    cfg = CompressionConfig(ffn_prune_ratio=0.5, quant_bits=8, embed_bits=8,
                            learning_rate=1e-3)
    result = evaluate(task, cfg)
    assert result.accuracy >= base.accuracy - 0.05, (base.accuracy, result.accuracy)
    assert result.size_bytes < base.size_bytes / 4
    assert result.quant_coverage == 1.0

