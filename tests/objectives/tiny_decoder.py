"""Tiny decoder LMs for tests: a Llama (grouped-query attention) or a GPT-2 built from a
config, briefly trained on the standard library's docstrings, saved with a byte-level BPE
tokenizer as a Hugging Face directory — what a user's local model directory looks like."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch

from objectives.tasks import CausalLMTask, hf_causal_lm_task
from objectives.tasks._causal_lm import _pretrain, _train_tokenizer, pack_tokens

_MODULES = ("os", "re", "json", "collections", "itertools", "functools", "pathlib",
            "argparse", "logging", "subprocess", "string", "textwrap", "shutil", "random",
            "statistics", "inspect", "typing", "heapq", "bisect", "csv")


def docstring_texts() -> tuple[list[str], list[str], list[str]]:
    """Docstrings of a few standard-library modules split 80/10/10 by position."""
    import importlib

    docs: list[str] = []
    for name in _MODULES:
        module = importlib.import_module(name)
        for _, obj in sorted(vars(module).items()):
            doc = inspect.getdoc(obj) if callable(obj) else None
            if doc and len(doc) > 40 and doc not in docs:
                docs.append(doc)
    train = [d for i, d in enumerate(docs) if i % 10 >= 2]
    return train, docs[0::10], docs[1::10]


def tiny_decoder_dir(out: Path, kind: str = "llama", *, steps: int = 60) -> Path:
    """Build, train for ``steps`` steps and save a tiny decoder LM with its tokenizer."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    train, _, _ = docstring_texts()
    tok = _train_tokenizer(train, 512, out)
    eos = tok.eos_token_id
    if kind == "llama":
        config = LlamaConfig(
            vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16,
            max_position_embeddings=128, tie_word_embeddings=True,
            bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
        )
        model = LlamaForCausalLM(config)
    else:
        config = GPT2Config(vocab_size=512, n_embd=64, n_layer=4, n_head=4, n_positions=128,
                            bos_token_id=eos, eos_token_id=eos)
        model = GPT2LMHeadModel(config)
    rows = pack_tokens(train, tok, max_length=32, max_rows=None, what="train")
    _pretrain(model, rows.inputs["input_ids"], steps=steps, batch_size=32,
              learning_rate=5e-3, seed=0)
    model.save_pretrained(str(out))
    return out


def tiny_decoder_task(model_dir: Path, **kwargs: object) -> CausalLMTask:
    """A causal-LM task over ``model_dir``: 128 train rows and 48 val/test rows of 32 tokens."""
    train, val, test = docstring_texts()
    settings: dict[str, object] = dict(
        max_length=32, name="tiny-decoder", max_train_rows=128, max_eval_rows=48,
        decode_tokens=8, latency_batch_size=4,
    )
    settings.update(kwargs)
    return hf_causal_lm_task(model_dir, train, val, test, **settings)  # type: ignore[arg-type]
