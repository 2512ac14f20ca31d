"""Causal-LM tasks: next-token labels, top-k distillation, decode latency, quantization of
every projection and export that reloads and generates the same tokens (real decoders
built from configs and trained here)."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from objectives import (
    IGNORE_INDEX,
    CompressionConfig,
    TaskError,
    TopKLogits,
    accuracy,
    distillation_loss,
    dynamic_int8_modules,
    evaluate,
    evaluate_teacher,
    forward,
    is_int4_weight,
    load_pretrained_compressed,
    save_pretrained_compressed,
    teacher_train_logits,
)
from objectives._trial import compress, pruned_copy
from objectives.tasks import hf_causal_lm_task, read_lm_text
from objectives.tasks._causal_lm import pack_tokens
from tests.objectives.tiny_decoder import docstring_texts, tiny_decoder_dir, tiny_decoder_task


@pytest.fixture(scope="module")
def llama_dir(tiny_llama_dir):
    return tiny_llama_dir


@pytest.fixture(scope="module")
def llama_task(llama_dir):
    return tiny_decoder_task(llama_dir)


def test_next_token_accuracy_counts_only_labelled_positions():
    logits = torch.zeros(2, 3, 4)
    logits[0, 0, 1] = logits[0, 1, 2] = logits[0, 2, 3] = 1.0  # predicts 1, 2, 3
    logits[1, :, 0] = 1.0  # predicts 0 everywhere
    labels = torch.tensor([[1, 0, 3], [0, IGNORE_INDEX, IGNORE_INDEX]])
    assert accuracy(logits, labels) == pytest.approx(3 / 4)  # 1 and 3 right, 0 wrong; 0 right


def test_pack_tokens_labels_are_the_next_token(llama_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(llama_dir))
    split = pack_tokens(["alpha beta gamma " * 20, "delta " * 30], tok, max_length=8,
                        max_rows=None, what="t")
    ids = split.inputs["input_ids"]
    assert ids.shape[1] == 8 and split.labels.shape == ids.shape
    assert torch.equal(split.labels[:, :-1], ids[:, 1:])
    assert torch.equal(split.labels[:-1, -1], ids[1:, 0])  # rows continue the stream
    with pytest.raises(TaskError, match="less than one row of max_length=64"):
        pack_tokens(["tiny"], tok, max_length=64, max_rows=None, what="val")


def test_bad_text_sources_are_one_line_errors(tmp_path):
    with pytest.raises(TaskError, match="no such file"):
        read_lm_text(tmp_path / "missing.txt", what="train")
    with pytest.raises(TaskError, match="no text"):
        read_lm_text(["", "  "], what="val")
    (tmp_path / "a.txt").write_text("some words here", encoding="utf-8")
    assert read_lm_text(tmp_path, what="test") == ["some words here"]
    with pytest.raises(TaskError, match="no config.json"):
        hf_causal_lm_task(tmp_path, ["a"], ["b"], ["c"])


def test_topk_distillation_equals_full_kl_when_k_is_the_vocabulary():
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    labels = torch.randint(0, 11, (2, 5))
    labels[1, 3:] = IGNORE_INDEX
    top = torch.topk(t, 11, dim=-1)
    full = distillation_loss(s, t, labels, temperature=2.0, alpha=0.7)
    topk = distillation_loss(s, TopKLogits(top.values, top.indices), labels,
                             temperature=2.0, alpha=0.7)
    assert float(topk) == pytest.approx(float(full), rel=1e-5)
    # Known answer: alpha * T^2 * KL + (1 - alpha) * CE over the 8 counted positions.
    keep = labels != IGNORE_INDEX
    kl = F.kl_div(F.log_softmax(s[keep] / 2, -1), F.log_softmax(t[keep] / 2, -1),
                  reduction="sum", log_target=True) / 8
    ce = F.cross_entropy(s[keep], labels[keep])
    assert float(full) == pytest.approx(float(0.7 * 4 * kl + 0.3 * ce), rel=1e-5)
    # A truncated cache compares both distributions renormalised over the k tokens: a
    # student equal to the teacher on them loses nothing, whatever its tail holds.
    top3 = torch.topk(t, 3, dim=-1)
    student = t.clone()
    student[..., :] -= 5.0
    student.scatter_(-1, top3.indices, top3.values)  # same top-3 logits, smaller tail
    zero = distillation_loss(student, TopKLogits(top3.values, top3.indices), labels,
                             temperature=2.0, alpha=1.0)
    assert float(zero) == pytest.approx(0.0, abs=1e-6)
    partial = distillation_loss(s, TopKLogits(top3.values, top3.indices), labels,
                                temperature=2.0, alpha=1.0)
    assert float(partial) > 0 and float(partial) != pytest.approx(float(full))


def test_teacher_topk_cache_holds_the_largest_logits(llama_dir):
    task = tiny_decoder_task(llama_dir, logit_cache_topk=8)
    cached = teacher_train_logits(task)
    assert isinstance(cached, TopKLogits)
    assert cached.values.shape == (len(task.train), 32, 8)
    with torch.no_grad():
        full = forward(task.teacher, {k: v[:4] for k, v in task.train.inputs.items()})
    want = torch.topk(full.float(), 8, dim=-1)
    assert torch.allclose(cached.values[:4], want.values, atol=1e-4)
    assert torch.equal(cached.indices[:4], want.indices)
    # Without a setting, small tasks cache full logits.
    assert isinstance(teacher_train_logits(tiny_decoder_task(llama_dir)), torch.Tensor)


def test_baseline_records_decode_and_prefill_latency_and_perplexity(llama_task):
    base = evaluate_teacher(llama_task)
    assert set(base.latencies) == {"prefill_ms", "decode_ms_per_token"}
    assert base.latency_ms == base.latencies["decode_ms_per_token"]  # the default objective
    assert base.latency.inner == llama_task.decode_tokens
    assert 0 < base.latencies["decode_ms_per_token"] < base.latencies["prefill_ms"] * 10
    # Perplexity is exp of the mean next-token cross-entropy on val.
    with torch.no_grad():
        logits = forward(llama_task.teacher, llama_task.val.inputs)
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), llama_task.val.labels.reshape(-1))
    assert base.perplexity == pytest.approx(math.exp(float(ce)), rel=1e-3)
    assert base.perplexity < 512 / 2  # trained: far better than a uniform guess
    prefill = tiny_decoder_task(llama_task.model_dir, latency_mode="prefill")
    pre = evaluate_teacher(prefill)
    assert pre.latency_ms == pre.latencies["prefill_ms"] and pre.latency.batch_size == 4
    with pytest.raises(TaskError, match="latency_mode 'decoding' is not supported"):
        tiny_decoder_task(llama_task.model_dir, latency_mode="decoding")


@pytest.mark.parametrize("bits", [8, 4])
def test_quantization_covers_every_projection_and_the_output_layer(llama_task, bits):
    model, _ = compress(llama_task, CompressionConfig(quant_bits=bits, learning_rate=3e-4))
    projections = [n for n, _ in llama_task.teacher.named_modules()
                   if n.endswith(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                  "up_proj", "down_proj", "lm_head"))]
    assert len(projections) == 4 * 7 + 1
    for name in projections:
        m = model.get_submodule(name)
        if bits == 8:
            assert isinstance(m, dynamic_int8_modules()), name
        else:
            assert is_int4_weight(m.weight), name


def test_distilled_student_is_measured_on_val_and_stays_near_the_teacher(llama_task):
    base = evaluate_teacher(llama_task)
    result = evaluate(llama_task, CompressionConfig(quant_bits=8, learning_rate=3e-4,
                                                    distill_alpha=1.0, batch_size=16))
    assert result.perplexity is not None and set(result.latencies) == set(base.latencies)
    assert abs(result.accuracy - base.accuracy) < 0.03
    assert result.size_bytes < base.size_bytes / 2
    # Paired on the same rows (rows are the unit, tokens pooled within them).
    assert result.accuracy_delta == pytest.approx(result.accuracy - base.accuracy, abs=1e-6)
    assert 0 < result.accuracy_delta_se < 0.05 and base.accuracy_delta is None


@pytest.fixture(scope="module")
def gpt2_task(tmp_path_factory):
    return tiny_decoder_task(tiny_decoder_dir(tmp_path_factory.mktemp("tiny-gpt2"), "gpt2",
                                              steps=30))


@pytest.mark.parametrize(("kind", "bits"), [("llama", 32), ("llama", 16), ("llama", 8),
                                            ("gpt2", 32), ("gpt2", 4)])
def test_export_reloads_and_generates_the_same_tokens(request, tmp_path, kind, bits):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    task = request.getfixturevalue(f"{kind}_task")
    config = CompressionConfig(quant_bits=bits, ffn_prune_ratio=0.5, learning_rate=3e-4)
    model, _ = compress(task, config)
    out = save_pretrained_compressed(model, tmp_path / "m", tokenizer_dir=task.tokenizer_dir,
                                     quant_bits=bits)
    if bits in (32, 16):  # floating point: a plain Hugging Face directory
        reloaded = AutoModelForCausalLM.from_pretrained(str(out)).eval()
        assert not (out / "slimsearch.json").exists()
        width = getattr(reloaded.config, "intermediate_size", None) or reloaded.config.n_inner
        assert width == 64 if kind == "llama" else width == 128
        model = getattr(model, "module", model)  # bf16: the wrapped model generates
    else:
        reloaded = load_pretrained_compressed(out)
    tok = AutoTokenizer.from_pretrained(str(out))
    prompt = tok(["Return the"], return_tensors="pt")
    kwargs = dict(max_new_tokens=12, do_sample=False, pad_token_id=tok.eos_token_id)
    with torch.no_grad():
        want = model.generate(**prompt, **kwargs)
        got = reloaded.generate(**prompt, **kwargs)
    assert torch.equal(want, got)
    assert want.shape[1] == prompt["input_ids"].shape[1] + 12


def test_splits_come_from_disjoint_text():
    train, val, test = docstring_texts()
    assert not set(train) & set(val) and not set(val) & set(test)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_depth_pruning_removes_the_least_influential_layers_exactly(request, tmp_path, kind):
    from transformers import AutoModelForCausalLM

    from objectives import count_parameters
    from objectives.operators._depth_pruning import block_influence, decoder_blocks

    task = request.getfixturevalue(f"{kind}_task")
    teacher = copy.deepcopy(task.teacher)
    _, blocks = decoder_blocks(teacher)
    # Make block 2 (nearly) the identity: zero the projections that write the residual.
    with torch.no_grad():
        for name, p in blocks[2].named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight", "c_proj.weight",
                              "c_proj.bias")):
                p.zero_()
    influence = block_influence(teacher, task.calibration_inputs)
    assert min(range(4), key=influence.__getitem__) == 2
    per_block = count_parameters(blocks[0])
    task = dataclasses.replace(task, teacher=teacher)
    student = pruned_copy(task, CompressionConfig(depth_prune_ratio=0.25))
    assert count_parameters(student) == count_parameters(teacher) - per_block
    _, kept = decoder_blocks(student)
    depth = getattr(student.config, "num_hidden_layers", None) or student.config.n_layer
    assert len(kept) == depth == 3
    attn = [b.self_attn if kind == "llama" else b.attn for b in kept]
    assert [a.layer_idx for a in attn] == [0, 1, 2]
    # Cached generation works and the saved directory reloads with the same tokens.
    out = save_pretrained_compressed(student, tmp_path / "d", tokenizer_dir=task.tokenizer_dir,
                                     quant_bits=32)  # GPT-2: Conv1D layers restored
    reloaded = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    prompt = {k: v[:1, :8] for k, v in task.val.inputs.items()}
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        cached = student.generate(**prompt, **kwargs)
        uncached = student.generate(**prompt, **kwargs, use_cache=False)
        assert torch.equal(cached, uncached)
        assert torch.equal(cached, reloaded.generate(**prompt, **kwargs))


def test_depth_pruning_is_refused_on_models_without_decoder_layers(digits_task):
    from objectives import check_setting

    with pytest.raises(TaskError, match=r"^depth_prune_ratio=0.5 removes decoder layers"):
        pruned_copy(digits_task, CompressionConfig(depth_prune_ratio=0.5))
    assert check_setting(digits_task, "depth_prune_ratio", 0.5).startswith("depth_prune_ratio")
    with pytest.raises(ValueError, match="depth_prune_ratio"):
        CompressionConfig(depth_prune_ratio=0.96)


def _llama(heads: int, kv: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=heads, num_key_value_heads=kv, head_dim=16,
        max_position_embeddings=64,
    )).eval()


@pytest.mark.parametrize(("heads", "kv", "ratio", "kept", "kept_kv"),
                         [(8, 2, 0.5, 4, 2), (8, 2, 0.75, 2, 2), (4, 4, 0.5, 2, 2)])
def test_head_pruning_keeps_kv_groups_whole_and_counts_exactly(
    tmp_path, heads, kv, ratio, kept, kept_kv
):
    from transformers import AutoModelForCausalLM

    from objectives import count_parameters
    from objectives.operators._decoder_heads import prune_decoder_heads

    model = _llama(heads, kv)
    before = count_parameters(model)
    ids = torch.randint(0, 512, (2, 12))
    assert prune_decoder_heads(model, ratio) == kept
    d, hidden, layers = 16, 64, 3
    removed_q = heads - kept
    removed_kv = kv - kept_kv
    expect = layers * (2 * removed_q * d * hidden + 2 * removed_kv * d * hidden)
    assert before - count_parameters(model) == expect
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (kept, kept_kv)
    for layer in model.model.layers:
        assert layer.self_attn.k_proj.out_features == kept_kv * d
        assert layer.self_attn.num_key_value_groups == kept // kept_kv
    model.save_pretrained(str(tmp_path / "d"))
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "d")).eval()
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, reloaded(ids).logits, atol=1e-6)
        kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=0)
        assert torch.equal(model.generate(ids[:1], **kwargs), reloaded.generate(ids[:1], **kwargs))


def test_head_pruning_keeps_the_strongest_query_heads_of_each_group():
    from objectives.operators._decoder_heads import prune_decoder_heads

    model = _llama(4, 2)  # groups {0, 1} and {2, 3}
    with torch.no_grad():
        for layer in model.model.layers:
            q = layer.self_attn.q_proj.weight.view(4, 16, 64)
            q[0] *= 0.01  # head 0 is weak: group 0 keeps head 1
            q[3] *= 0.01  # head 3 is weak: group 1 keeps head 2
            want = torch.cat([q[1], q[2]]).reshape(32, 64).clone()
    prune_decoder_heads(model, 0.5)
    assert torch.equal(model.model.layers[-1].self_attn.q_proj.weight, want)


@pytest.mark.parametrize(("ratio", "count", "removed"), [
    (0.01, 3, 1), (0.16, 3, 1), (0.34, 3, 2), (0.25, 2, 1), (0.5, 2, 1), (0.9, 2, 1),
    (0.05, 6, 1), (1 / 6, 6, 1), (0.5, 6, 3), (0.3, 10, 3), (0.95, 4, 3), (0.0, 6, 0),
])
def test_a_positive_ratio_always_removes_a_unit_rounding_up(ratio, count, removed):
    from objectives.operators._ratio import removed_units

    assert removed_units(ratio, count, setting="r", unit="heads") == removed


def test_a_ratio_that_cannot_remove_anything_is_refused():
    from objectives.operators._decoder_heads import prune_decoder_heads
    from objectives.operators._ratio import removed_units

    with pytest.raises(TaskError, match=r"^depth_prune_ratio=0.2 cannot remove any of 1 "):
        removed_units(0.2, 1, setting="depth_prune_ratio", unit="decoder layers")
    with pytest.raises(TaskError, match=r"^attn_prune_ratio=0.5 cannot remove any of 1 "):
        prune_decoder_heads(_llama(1, 1), 0.5)


@pytest.mark.parametrize(("heads", "kv", "ratio", "kept"),
                         [(8, 2, 0.1, 6), (4, 2, 0.25, 2), (4, 2, 0.1, 2), (4, 4, 0.05, 3)])
def test_small_head_ratios_prune_at_least_one_head_per_group(heads, kv, ratio, kept):
    from objectives.operators._decoder_heads import prune_decoder_heads

    model = _llama(heads, kv)  # each of these ratios used to round to keeping every head
    assert prune_decoder_heads(model, ratio) == kept
    assert model.config.num_attention_heads == kept
    assert all(m.self_attn.q_proj.out_features == kept * 16 for m in model.model.layers)


def test_trial_records_the_layers_and_heads_it_really_pruned(llama_task):
    config = CompressionConfig(depth_prune_ratio=0.1, attn_prune_ratio=0.1,
                               learning_rate=1e-4)
    result = evaluate(dataclasses.replace(llama_task, finetune_epochs=1), config)
    # 4 layers, ratio 0.1: one layer (round() removed none); 2 query heads per KV group:
    # one each, so 2 of 4 heads stay.
    assert (result.layers_removed, result.heads_kept) == (1, 2)
    student = pruned_copy(llama_task, config)
    assert len(student.model.layers) == 3 and student.config.num_attention_heads == 2
    from objectives.operators._structure import applied_pruning

    assert applied_pruning(llama_task.teacher, student, CompressionConfig()) == {}


def _int_attrs(module: torch.nn.Module) -> dict[str, object]:
    return {k: v for k, v in vars(module).items()
            if isinstance(v, (bool, int, float, str)) and not k.startswith("_")}


def test_pruned_decoder_equals_one_built_fresh_from_its_rewritten_config(llama_task):
    """Depth and head pruning write module attributes transformers reads (``layer_idx``,
    ``num_key_value_groups``): a model built from the rewritten config with the same
    weights must compute the same logits, with and without the KV cache, and carry the
    same attributes on every module (fails when transformers caches a new one)."""
    from transformers import LlamaForCausalLM

    teacher = copy.deepcopy(llama_task.teacher)
    with torch.no_grad():  # blocks 0 and 1 (nearly) the identity: they go, 2 and 3 move up
        for block in teacher.model.layers[:2]:
            block.self_attn.o_proj.weight.zero_()
            block.mlp.down_proj.weight.zero_()
    teacher.config.unrelated_list = ["a", "b", "c", "d"]  # as long as the depth: kept
    teacher.config.layer_types = ["full_attention"] * 4
    task = dataclasses.replace(llama_task, teacher=teacher)
    student = pruned_copy(task, CompressionConfig(depth_prune_ratio=0.5, attn_prune_ratio=0.5))
    assert student.config.num_hidden_layers == 2 and student.config.num_attention_heads == 2
    assert [b.self_attn.q_proj._slimsearch_origin for b in student.model.layers] == [
        f"model.layers.{i}.self_attn.q_proj" for i in (2, 3)]
    assert student.config.unrelated_list == ["a", "b", "c", "d"]
    assert student.config.layer_types == ["full_attention"] * 2
    fresh = LlamaForCausalLM(copy.deepcopy(student.config)).eval()
    fresh.load_state_dict(student.state_dict())
    for (name, ours), (_, theirs) in zip(student.named_modules(), fresh.named_modules(),
                                         strict=True):
        assert _int_attrs(ours) == _int_attrs(theirs), name
    ids = llama_task.val.inputs["input_ids"][:2, :12]
    kwargs = dict(max_new_tokens=8, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        assert torch.allclose(student(ids).logits, fresh(ids).logits, atol=1e-5)
        cached = student.generate(ids, **kwargs)
        assert torch.equal(cached, fresh.generate(ids, **kwargs))
        assert torch.equal(cached, student.generate(ids, **kwargs, use_cache=False))


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_rows_and_decoding_longer_than_the_model_positions_are_refused(request, kind):
    task = request.getfixturevalue(f"{kind}_task")  # both built with 128 positions
    key = "max_position_embeddings" if kind == "llama" else "n_positions"
    train, val, test = docstring_texts()
    with pytest.raises(TaskError, match=rf"^max_length=129 exceeds the 128 positions of the "
                                        rf"model \(config.{key}\); lower max_length"):
        hf_causal_lm_task(task.model_dir, train, val, test, max_length=129)
    with pytest.raises(TaskError, match=r"^decode_prompt_length \+ decode_tokens = 100 \+ 29 "
                                        r"= 129 exceeds the 128 positions"):
        hf_causal_lm_task(task.model_dir, train, val, test, max_length=32,
                          decode_prompt_length=100, decode_tokens=29)
    ok = hf_causal_lm_task(task.model_dir, train, val, test, max_length=32,
                           decode_prompt_length=100, decode_tokens=28, max_train_rows=4)
    assert ok.decode_prompt_length + ok.decode_tokens == 128


def test_one_batched_forward_loop_serves_metrics_outcomes_and_teacher_logits(llama_task):
    from objectives.measure._latency import _stats
    from objectives.measure._metric import TOKEN_BATCH_ROWS, logit_batches, row_outcomes
    from objectives.operators._teacher_logits import _predict_topk, predict_logits

    split = llama_task.val  # 48 token rows: batches of 32 and 16, in order
    model = llama_task.teacher
    rows = [r for r, _ in logit_batches(model, split, batch_size=256, device="cpu")]
    assert rows == [slice(0, TOKEN_BATCH_ROWS), slice(TOKEN_BATCH_ROWS, 2 * TOKEN_BATCH_ROWS)]
    with torch.no_grad():
        full = forward(model, split.inputs).float()
        logits = predict_logits(model, split)
        top = _predict_topk(model, split, 5)
    assert torch.allclose(logits, full, atol=1e-5)
    assert torch.allclose(top.values, torch.topk(full, 5, dim=-1).values, atol=1e-5)
    hits, counts = row_outcomes(model, split)
    assert torch.equal(hits, (full.argmax(-1) == split.labels).sum(1))
    assert int(counts.sum()) == split.labels.numel()
    # The latency statistics of both timers: known answers on ten samples.
    stats = _stats([float(v) for v in range(10, 0, -1)], inner=3, threads=1, batch_size=2,
                   device=torch.device("cpu"))
    assert (stats.median_ms, stats.p90_ms, stats.repeats) == (5.5, 10.0, 10)
    assert stats.cv == pytest.approx(math.sqrt(8.25) / 5.5)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_decode_latency_passes_the_cache_by_the_name_forward_declares(kind):
    """No deprecated keyword reaches the model: transformers 5.2x renamed
    ``past_key_values`` to ``cache`` (the old name goes in 5.40)."""
    import warnings

    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from objectives import measure_decode_latency

    torch.manual_seed(0)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))
    else:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=4,
                                           n_positions=64))
    prompt = {"input_ids": torch.randint(0, 64, (2, 8)),
              "attention_mask": torch.ones(2, 8, dtype=torch.long)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        stats = measure_decode_latency(model, prompt, tokens=4, repeats=3, warmup=1)
    assert stats.inner == 4 and stats.batch_size == 2 and stats.median_ms > 0
