"""Causal language-model tasks: any local decoder (``hf_causal_lm_task``) and ``tiny_lm``.

A causal LM task packs each split's text into rows of ``max_length`` tokens (texts joined
with the end-of-text token, cut into consecutive windows) and labels every position with
the token that follows it, so the task metric — ``objectives.accuracy`` on token labels —
is **next-token accuracy** on the validation rows; perplexity is recorded beside it and
the test split is only reported. Latency is what LLM users read: milliseconds per
generated token with the KV cache (``latency_mode="decode"``, the default) or the prefill
time of ``latency_batch_size × max_length`` tokens (``"prefill"``); both are recorded.

``tiny_lm`` is the embedded decoder task: a small Llama-style model (grouped-query
attention, gated MLP) built from a config and pretrained here, once, on real English text
that ships with the interpreter — the docstrings of the standard library's modules — with
a byte-level BPE tokenizer trained on the same training text. Model and tokenizer are
cached as a Hugging Face directory, so the whole decoder path runs offline.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import logging
import math
import os
import shutil
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from objectives._cache import cache_dir
from objectives._errors import TaskError
from objectives._imports import import_transformers
from objectives._task import Split, Task

logger = logging.getLogger("slimsearch")

LMText = str | Path | Sequence[str]
"""A split's text: a ``.txt`` file, a directory of ``.txt`` files, or a list of texts."""


@dataclass(eq=False)
class CausalLMTask(Task):
    """A ``Task`` whose teacher is a Hugging Face causal LM and labels are next tokens.

    Attributes:
        model_dir: The original model directory (its config is the architecture).
        tokenizer_dir: Directory the tokenizer loads from (``AutoTokenizer``).
        max_length: Tokens per row.
    """

    model_dir: str = ""
    tokenizer_dir: str = ""
    max_length: int = 64
    space_preset: str = "decoder"
    latency_mode: str = "decode"


def read_lm_text(source: LMText, *, what: str = "text") -> list[str]:
    """The texts of one split: a list as given, a ``.txt`` file, or a directory's ``.txt``
    files (sorted by name).

    Raises:
        TaskError: a path that does not exist, or no non-empty text.
    """
    if isinstance(source, (str, Path)) and (
        isinstance(source, Path) or os.sep in source or source.endswith(".txt")
        or Path(source).exists()
    ):
        path = Path(source)
        if path.is_dir():
            files = sorted(path.glob("*.txt"))
            texts = [f.read_text(encoding="utf-8", errors="replace") for f in files]
        elif path.is_file():
            texts = [path.read_text(encoding="utf-8", errors="replace")]
        else:
            raise TaskError(f"{what}: no such file or directory {str(path)!r}")
    elif isinstance(source, str):
        raise TaskError(
            f"{what}: {source[:40]!r} is neither a .txt file nor a directory; pass texts "
            "as a list of strings"
        )
    else:
        texts = list(source)
        bad = next((t for t in texts if not isinstance(t, str)), None)
        if bad is not None:
            raise TaskError(f"{what}: texts must be strings, got {type(bad).__name__}")
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise TaskError(f"{what}: no text")
    return texts


def pack_tokens(
    texts: Sequence[str], tokenizer: Any, *, max_length: int, max_rows: int | None, what: str
) -> Split:
    """Tokenize ``texts``, join them with the end-of-text token and cut consecutive windows.

    Row ``i`` holds tokens ``[i·L, (i+1)·L)`` of the stream and its labels the tokens
    one position later, so every position is counted; at most ``max_rows`` rows.

    Raises:
        TaskError: the text yields fewer than ``max_length + 1`` tokens (not one row).
    """
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    limit = None if max_rows is None else max_rows * max_length + 1
    for text in texts:
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            stream.append(int(eos))
        if limit is not None and len(stream) >= limit:
            break
    rows = (len(stream) - 1) // max_length
    if max_rows is not None:
        rows = min(rows, max_rows)
    if rows < 1:
        raise TaskError(
            f"{what}: {len(stream)} tokens is less than one row of max_length={max_length} "
            "(+1); give more text or a smaller max_length"
        )
    ids = torch.tensor(stream[: rows * max_length + 1], dtype=torch.long)
    inputs = ids[:-1].view(rows, max_length)
    labels = ids[1:].view(rows, max_length).clone()
    return Split({"input_ids": inputs, "attention_mask": torch.ones_like(inputs)}, labels)


def hf_causal_lm_task(
    model_dir: str | Path,
    train: LMText,
    val: LMText,
    test: LMText,
    *,
    max_length: int = 64,
    name: str = "hf_causal_lm",
    max_train_rows: int | None = 2048,
    max_eval_rows: int | None = 256,
    latency_mode: str = "decode",
    latency_batch_size: int = 8,
    decode_batch_size: int = 1,
    decode_prompt_length: int | None = None,
    decode_tokens: int = 16,
    finetune_epochs: int = 1,
    threads: int = 1,
    tokenizer_dir: str | Path | None = None,
    logit_cache_topk: int | None = None,
    spec: dict[str, Any] | None = None,
) -> CausalLMTask:
    """A next-token-prediction ``Task`` from a local ``AutoModelForCausalLM`` directory.

    Nothing is downloaded: model and tokenizer load with ``local_files_only``.

    Example:
        >>> task = hf_causal_lm_task("my-llama/", "train.txt", "val.txt", "test.txt",
        ...                          max_length=128)                   # doctest: +SKIP
        >>> Search(task).run(n_trials=30)                              # doctest: +SKIP

    Args:
        model_dir: Directory with ``config.json``, weights and (unless ``tokenizer_dir``)
            the tokenizer.
        train, val, test: Each split's text (``LMText``). ``val`` ranks trials (next-token
            accuracy); ``test`` is only reported; fine-tuning sees ``train`` only.
        max_length: Tokens per row (the prefill latency's sequence length too).
        max_train_rows, max_eval_rows: Caps on the rows of train and of val/test
            (``None``: all the text gives).
        latency_mode: ``"decode"`` (ms per generated token, the objective by default) or
            ``"prefill"``; both are recorded on every trial.
        latency_batch_size: Rows of the prefill measurement.
        decode_batch_size, decode_prompt_length, decode_tokens: The decode measurement
            (prompt length default: half of ``max_length``).
        finetune_epochs: Distillation epochs per trial.
        threads: Intra-op threads per trial.
        logit_cache_topk: Cache only the teacher's top ``k`` logits per position (see
            ``Task.logit_cache_topk``).

    Raises:
        TaskError: the directory is not a causal LM, a split has too little text, a
            setting is out of range, or ``max_length`` or ``decode_prompt_length +
            decode_tokens`` exceeds the positions the model has
            (``max_position_embeddings``; ``n_positions`` for GPT-2).
    """
    transformers = import_transformers()
    model_path = Path(model_dir)
    tok_path = Path(tokenizer_dir) if tokenizer_dir is not None else model_path
    if not (model_path / "config.json").is_file():
        raise TaskError(f"{str(model_path)!r} has no config.json: not a model directory")
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise TaskError(f"max_length must be an integer >= 2, got {max_length!r}")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            str(tok_path), local_files_only=True
        )
        teacher = transformers.AutoModelForCausalLM.from_pretrained(
            str(model_path), local_files_only=True, dtype=torch.float32
        )
    except (OSError, ValueError, KeyError) as exc:
        raise TaskError(
            f"cannot load a causal LM and tokenizer from {str(model_path)!r}: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    prompt = decode_prompt_length if decode_prompt_length is not None else max(1, max_length // 2)
    _refuse_positions(teacher.config, max_length, prompt, decode_tokens)
    splits = [
        pack_tokens(read_lm_text(src, what=what), tokenizer, max_length=max_length,
                    max_rows=rows, what=what)
        for src, what, rows in (
            (train, "train", max_train_rows),
            (val, "val", max_eval_rows),
            (test, "test", max_eval_rows),
        )
    ]
    vocab = int(teacher.get_output_embeddings().weight.shape[0])
    top = max(int(s.labels.max()) for s in splits)
    if top >= vocab:
        raise TaskError(
            f"the tokenizer of {str(tok_path)!r} produces token id {top} but the model's "
            f"vocabulary has {vocab} entries: tokenizer and model do not match"
        )
    return CausalLMTask(
        name=name,
        teacher=teacher.eval(),
        train=splits[0],
        val=splits[1],
        test=splits[2],
        num_classes=vocab,
        latency_batch_size=latency_batch_size,
        finetune_epochs=finetune_epochs,
        threads=threads,
        spec=dict(spec or {}),
        latency_mode=latency_mode,
        decode_batch_size=decode_batch_size,
        decode_prompt_length=prompt,
        decode_tokens=decode_tokens,
        logit_cache_topk=logit_cache_topk,
        model_dir=str(model_path),
        tokenizer_dir=str(tok_path),
        max_length=max_length,
    )


def _refuse_positions(config: Any, max_length: int, prompt: int, tokens: int) -> None:
    """Raise (one line) when a row or the decode measurement needs more positions than
    the model's config has (``max_position_embeddings``, ``n_positions`` for GPT-2)."""
    key = next((k for k in ("n_positions", "max_position_embeddings")  # GPT-2 aliases both
                if isinstance(getattr(config, k, None), int)), None)
    if key is None:
        return
    limit = int(getattr(config, key))
    if max_length > limit:
        raise TaskError(
            f"max_length={max_length} exceeds the {limit} positions of the model "
            f"(config.{key}); lower max_length to at most {limit}"
        )
    if prompt + tokens > limit:
        raise TaskError(
            f"decode_prompt_length + decode_tokens = {prompt} + {tokens} = {prompt + tokens} "
            f"exceeds the {limit} positions of the model (config.{key}); lower "
            "decode_prompt_length or decode_tokens"
        )


# ------------------------------------------------------------------------------ tiny_lm
_SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "__pycache__",
                        "lib2to3", "turtledemo"})


def stdlib_docstrings() -> list[tuple[str, str]]:
    """``(module path, docstring)`` of every documented module, class and function of the
    interpreter's standard library (sorted by path; test suites left out). Parsed once
    per process (a few seconds); each call returns a new list."""
    return list(_stdlib_docstrings(sysconfig.get_paths()["stdlib"]))


@functools.lru_cache(maxsize=2)
def _stdlib_docstrings(stdlib: str) -> tuple[tuple[str, str], ...]:
    root = Path(stdlib)
    out: list[tuple[str, str]] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if _SKIP_DIRS.intersection(rel.parts[:-1]):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) >= 40:
                    out.append((rel.as_posix(), doc))
    return tuple(out)


def _split_of(module: str) -> int:
    """0 = test, 1 = val, else train: a stable 10/10/80 split by module."""
    return int(hashlib.sha256(module.encode()).hexdigest(), 16) % 10


def tiny_lm_texts() -> tuple[list[str], list[str], list[str]]:
    """The standard library's docstrings split by module into (train, val, test)."""
    parts: tuple[list[str], list[str], list[str]] = ([], [], [])
    for module, doc in stdlib_docstrings():
        k = _split_of(module)
        parts[2 if k == 0 else 1 if k == 1 else 0].append(doc)
    return parts


PRETRAIN_VERSION = 1
"""Bump when the tokenizer or pretraining recipe below changes (it keys the cache)."""

TINY_LM_CONFIG: dict[str, Any] = {
    "vocab_size": 2048,
    "hidden_size": 192,
    "intermediate_size": 512,
    "num_hidden_layers": 6,
    "num_attention_heads": 6,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
    "rms_norm_eps": 1e-5,
}
"""The ``LlamaConfig`` of ``tiny_lm``: 6 layers, 6 query heads over 2 KV heads, gated MLP."""


def _train_tokenizer(texts: list[str], vocab_size: int, out: Path) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    transformers = import_transformers()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
        pad_token="<|endoftext|>", unk_token="<|endoftext|>",
    )
    fast.save_pretrained(str(out))
    return fast


def _pretrain(model: torch.nn.Module, rows: torch.Tensor, *, steps: int, batch_size: int,
              learning_rate: float, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm)
        * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)),
    )
    model.train()
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        idx = torch.randint(0, rows.shape[0], (batch_size,), generator=gen)
        x = rows[idx]
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 100 == 0:
            logger.info("tiny_lm pretraining: step %d/%d, loss %.3f", step, steps, loss.item())
    model.eval()
    return float(loss.item())


def tiny_lm_dir(*, steps: int = 300, seed: int = 0, cache: str | Path | None = None) -> Path:
    """The pretrained ``tiny_lm`` model directory, built on first use and cached.

    The key covers ``PRETRAIN_VERSION``, ``TINY_LM_CONFIG``, the torch version, the
    training text and the settings (not this module's source: editing a docstring must
    not re-train); a half-written directory is never used (it is built beside and renamed).
    """
    transformers = import_transformers()
    train, _, _ = tiny_lm_texts()
    h = hashlib.sha256()
    h.update("\x00".join(train).encode())
    h.update(repr((PRETRAIN_VERSION, sorted(TINY_LM_CONFIG.items()), steps, seed,
                   torch.__version__.split("+")[0])).encode())
    key = h.hexdigest()[:20]
    root = Path(cache) if cache is not None else cache_dir()
    out = root / "teachers" / f"tiny_lm-{key}"
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    logger.info("pretraining the tiny_lm teacher (%d steps; cached at %s)", steps, out)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.manual_seed(seed)
    tokenizer = _train_tokenizer(train, TINY_LM_CONFIG["vocab_size"], tmp)
    config = transformers.LlamaConfig(
        **TINY_LM_CONFIG, bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id,
    )
    model = transformers.LlamaForCausalLM(config)
    rows = pack_tokens(train, tokenizer, max_length=64, max_rows=None, what="tiny_lm train")
    _pretrain(model, rows.inputs["input_ids"], steps=steps, batch_size=32,
              learning_rate=3e-3, seed=seed)
    model.save_pretrained(str(tmp))
    try:
        os.replace(tmp, out)
    except OSError:  # another process finished first: use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def tiny_lm(
    *,
    steps: int = 300,
    seed: int = 0,
    max_length: int = 64,
    max_train_rows: int = 1024,
    max_eval_rows: int = 256,
    latency_mode: str = "decode",
    finetune_epochs: int = 1,
    threads: int = 1,
    cache: str | Path | None = None,
) -> CausalLMTask:
    """The embedded decoder task: a small Llama-style LM on the standard library's docstrings.

    ``TINY_LM_CONFIG`` (6 layers, grouped-query attention 6/2, gated MLP 512, tied
    embeddings, 2,048-token byte-level BPE) pretrained for ``steps`` steps of 32 × 64
    tokens (a few minutes on 2 cores; cached); splits are by module (80/10/10), so
    validation and test text come from modules the model never trained on.

    Args:
        steps: Pretraining steps of the teacher.
        seed: Seeds the pretraining.
        max_length: Tokens per row.
        max_train_rows, max_eval_rows: Rows of train and of val/test.
        latency_mode: ``"decode"`` (default) or ``"prefill"``.
        finetune_epochs: Distillation epochs per trial.
        threads: Intra-op threads per trial.
        cache: Cache directory (default ``$SLIMSEARCH_CACHE_DIR`` or ``~/.cache/slimsearch``).
    """
    model_dir = tiny_lm_dir(steps=steps, seed=seed, cache=cache)
    train, val, test = tiny_lm_texts()
    spec = {"steps": steps, "seed": seed, "max_length": max_length,
            "max_train_rows": max_train_rows, "max_eval_rows": max_eval_rows,
            "latency_mode": latency_mode, "finetune_epochs": finetune_epochs,
            "threads": threads}
    return hf_causal_lm_task(
        model_dir, train, val, test, max_length=max_length, name="tiny_lm",
        max_train_rows=max_train_rows, max_eval_rows=max_eval_rows,
        latency_mode=latency_mode, finetune_epochs=finetune_epochs, threads=threads,
        spec=spec,
    )
