"""Compressed Hugging Face models as directories a user can load without slimsearch's search.

``save_pretrained_compressed`` writes::

    out/
      config.json          # the architecture, vocab_size updated when pruned
      slimsearch.json      # compressed structure: Linear shapes, heads per layer, bits
      model.safetensors    # weights (int8 layers as int8 values + scales; no pickle)
      tokenizer files      # vocabulary remapped when it was pruned

A causal language model (``*ForCausalLM``) whose weights stay floating point (fp32 or
bf16, embeddings fp32) is written as a plain Hugging Face directory instead — its config
carries the pruned head count, MLP width and layer count — so
``AutoModelForCausalLM.from_pretrained(out)`` loads it with no slimsearch code;
quantized ones use the structure file like classifiers. ``load_pretrained_compressed``
loads both.

``load_pretrained_compressed(out)`` rebuilds a structured directory: ``from_config`` builds the
uncompressed architecture, pruned Linears are resized and attention modules told their
head counts, the same quantization is applied, then the weights are loaded. A plain
``from_pretrained`` cannot do this (it derives head sizes from ``hidden_size /
num_attention_heads``).

Vocabulary pruning is folded into the tokenizer: the exported vocabulary lists the
kept tokens in their new order (WordPiece/WordLevel tokenizers, i.e. a
``tokenizer.json`` with a ``vocab`` mapping); the tokenizer then produces exactly the
ids the compressed model was trained on for every text made only of kept tokens, and
the unknown token elsewhere.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from objectives._errors import TaskError
from objectives._imports import import_transformers
from objectives._serialize import load_weights, save_weights
from objectives._tokenizer import load_tokenizer
from objectives.operators._embedding_quant import quantize_embeddings
from objectives.operators._linear_quant import BFloat16Linear, Float32Island
from objectives.operators._qtypes import dynamic_int8_modules
from objectives.operators._quantize import BFloat16Module, quantize
from objectives.operators._transformer_pruning import attention_modules
from objectives.operators._vocab import unwrap_vocabulary

STRUCTURE_FILE = "slimsearch.json"
WEIGHTS_FILE = "model.safetensors"
_TOKENIZER_FILES = (
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)


def _linear_shape(m: nn.Module) -> tuple[int, int, bool] | None:
    if isinstance(m, nn.Linear):
        return m.in_features, m.out_features, m.bias is not None
    if isinstance(m, dynamic_int8_modules()):
        w = m.weight()
        return int(w.shape[1]), int(w.shape[0]), m.bias() is not None
    if isinstance(m, BFloat16Linear):  # a per-layer bf16 layer: rebuilt as nn.Linear first
        return m.in_features, m.out_features, m.bias is not None
    if isinstance(m, Float32Island):  # a layer of a bf16 base: rebuilt as nn.Linear first
        return _linear_shape(m.inner)
    return None


def _linears(model: nn.Module) -> dict[str, list[int | bool]]:
    """Each Linear-like layer's (in, out, bias) by name; an island's inner layer is
    recorded under the island's name (what ``quantize`` rebuilds it from)."""
    islands = {f"{n}.inner" for n, m in model.named_modules() if isinstance(m, Float32Island)}
    return {name: list(shape) for name, m in model.named_modules()
            if name not in islands and (shape := _linear_shape(m)) is not None}


def save_pretrained_compressed(
    model: nn.Module,
    output_dir: str | Path,
    *,
    tokenizer_dir: str | Path,
    quant_bits: int,
    embed_bits: int = 32,
    edge_bits: int = 0,
    layer_bits: dict[str, int] | None = None,
) -> Path:
    """Write the compressed ``model`` (as a trial produced it) as a loadable directory.

    Args:
        model: A compressed Hugging Face classifier (possibly bf16-wrapped, int8, with
            a pruned vocabulary); it is not modified.
        output_dir: Created if missing; files of the same names are replaced.
        tokenizer_dir: The task's tokenizer directory (``TextTask.tokenizer_dir``).
        quant_bits, embed_bits, edge_bits: The config's bit-widths (how to rebuild the
            model).
        layer_bits: Per-layer precisions (a ``bit_budget`` trial's), if any.

    Returns:
        ``output_dir`` as a ``Path``.

    Raises:
        TaskError: the model is not a Hugging Face model, or a pruned vocabulary cannot
            be folded into this kind of tokenizer.
    """
    inner = model.module if isinstance(model, BFloat16Module) else model
    config = getattr(inner, "config", None)
    if config is None or not hasattr(config, "to_json_string"):
        raise TaskError(
            f"{type(inner).__name__} is not a Hugging Face model; only Hugging Face "
            "classifiers are exported as model directories"
        )
    inner = copy.deepcopy(inner)
    kept = unwrap_vocabulary(inner)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (
        is_causal_lm(inner) and kept is None and int(quant_bits) in (32, 16)
        and int(embed_bits) == 32 and not layer_bits
    ):
        # Floating-point weights in a shape the config expresses: a plain HF directory.
        _express_mlp_width(inner)
        _restore_conv1d(inner)
        (out / STRUCTURE_FILE).unlink(missing_ok=True)
        _copy_tokenizer(Path(tokenizer_dir), out)
        inner.save_pretrained(str(out))
        return out

    config = copy.deepcopy(config)
    if kept is not None:
        config.vocab_size = int(kept.numel())
        old_to_new = {int(o): n for n, o in enumerate(kept.tolist())}
        pad = getattr(config, "pad_token_id", None)
        if pad is not None:
            config.pad_token_id = old_to_new.get(int(pad))
        _remap_tokenizer(Path(tokenizer_dir), out, old_to_new)
    else:
        _copy_tokenizer(Path(tokenizer_dir), out)
    config.save_pretrained(str(out))

    structure = {
        "format": 1,
        "architecture": type(inner).__name__,
        "quant_bits": int(quant_bits),
        "embed_bits": int(embed_bits),
        "edge_bits": int(edge_bits),
        "layer_bits": None if layer_bits is None else {k: int(v) for k, v in layer_bits.items()},
        "linears": _linears(inner),
        "attention_heads": {
            name: int(m.num_attention_heads) for name, m in attention_modules(inner)
        },
    }
    (out / STRUCTURE_FILE).write_text(json.dumps(structure, indent=1), encoding="utf-8")
    # Same module tree as load_pretrained_compressed rebuilds (bf16 keeps its wrapper).
    save_weights(BFloat16Module(inner, cast=False) if isinstance(model, BFloat16Module) else inner,
                 out / WEIGHTS_FILE)
    return out


def _express_mlp_width(model: nn.Module) -> None:
    """Write the (pruned) MLP width into the model's config so ``from_config`` builds it.

    Llama-style ``up_proj`` widths go to ``intermediate_size``, GPT-2 ``c_fc`` widths to
    ``n_inner``. Pruning gives every block the same width; a model whose blocks differ
    cannot be expressed in one config value and raises.

    Raises:
        TaskError: the blocks' MLP widths differ.
    """
    config = model.config
    for attr, layer in (("intermediate_size", "up_proj"), ("n_inner", "c_fc")):
        widths = {
            (m.out_features if isinstance(m, nn.Linear) else m.nf)
            for name, m in model.named_modules() if name.endswith(f"mlp.{layer}")
        }
        if not widths or not hasattr(config, attr):
            continue
        if len(widths) > 1:
            raise TaskError(
                f"the MLP widths {sorted(widths)} differ between blocks; one config value "
                f"({attr}) cannot express them — export with quantization or file an issue"
            )
        setattr(config, attr, widths.pop())


def _restore_conv1d(model: nn.Module) -> None:
    """Turn the ``nn.Linear`` layers ``linearize_conv1d`` made back into ``Conv1D`` (in
    place), wherever the architecture built from the config has a ``Conv1D`` — so a GPT-2
    file has the transposed weights ``from_pretrained`` expects."""
    transformers = import_transformers()
    from transformers.pytorch_utils import Conv1D

    with torch.device("meta"):
        fresh = transformers.AutoModelForCausalLM.from_config(model.config)
    for name, m in list(model.named_modules()):
        if not isinstance(m, nn.Linear):
            continue
        try:
            original = fresh.get_submodule(name)
        except AttributeError:
            continue
        if isinstance(original, Conv1D):
            conv = Conv1D(m.out_features, m.in_features)
            with torch.no_grad():
                conv.weight.copy_(m.weight.detach().t())
                if m.bias is not None:
                    conv.bias.copy_(m.bias.detach())
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, conv)


def is_causal_lm(model: nn.Module) -> bool:
    """Whether ``model`` is a Hugging Face causal LM (its class is ``*ForCausalLM`` or
    ``*LMHeadModel``)."""
    name = type(model).__name__
    return name.endswith("ForCausalLM") or name.endswith("LMHeadModel")


def load_pretrained_compressed(path: str | Path) -> nn.Module:
    """Load a directory written by ``save_pretrained_compressed`` (or ``slimsearch apply``).

    A causal LM written as a plain Hugging Face directory (no structure file) is loaded
    with ``AutoModelForCausalLM.from_pretrained``.

    Example:
        >>> model = load_pretrained_compressed("compressed/")        # doctest: +SKIP
        >>> tok = AutoTokenizer.from_pretrained("compressed/")       # doctest: +SKIP
        >>> model(**tok(["the soup was cold"], return_tensors="pt")).logits  # doctest: +SKIP

    Returns:
        The compressed model in eval mode (CPU).

    Raises:
        TaskError: the directory is not a slimsearch model directory or is corrupt.
    """
    transformers = import_transformers()
    p = Path(path)
    if not (p / STRUCTURE_FILE).is_file() and (p / "config.json").is_file():
        try:
            return transformers.AutoModelForCausalLM.from_pretrained(
                str(p), local_files_only=True
            ).eval()
        except (OSError, ValueError) as exc:
            raise TaskError(
                f"{str(p)!r} is neither a slimsearch model directory ({STRUCTURE_FILE}) nor "
                f"a causal LM directory: {str(exc).splitlines()[0]}"
            ) from None
    try:
        structure = json.loads((p / STRUCTURE_FILE).read_text(encoding="utf-8"))
        config = transformers.AutoConfig.from_pretrained(str(p), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TaskError(
            f"{str(p)!r} is not a slimsearch model directory (needs config.json and "
            f"{STRUCTURE_FILE}): {exc}"
        ) from None
    auto = (transformers.AutoModelForCausalLM
            if structure.get("architecture", "").endswith(("ForCausalLM", "LMHeadModel"))
            else transformers.AutoModelForSequenceClassification)
    model = auto.from_config(config)
    with torch.no_grad():
        for name, (fan_in, fan_out, bias) in structure.get("linears", {}).items():
            try:
                current = model.get_submodule(name)
            except AttributeError:
                raise TaskError(f"{p}: {STRUCTURE_FILE} names unknown layer {name!r}") from None
            if _linear_shape(current) != (fan_in, fan_out, bias):
                parent, _, attr = name.rpartition(".")
                owner = model.get_submodule(parent) if parent else model
                setattr(owner, attr, nn.Linear(fan_in, fan_out, bias=bias))
        for name, heads in structure.get("attention_heads", {}).items():
            m = model.get_submodule(name)
            m.num_attention_heads = int(heads)
            m.all_head_size = int(heads) * int(m.attention_head_size)
    model.eval()
    model = quantize_embeddings(model, int(structure.get("embed_bits", 32)))
    model = quantize(
        model,
        int(structure.get("quant_bits", 32)),
        edge_bits=int(structure.get("edge_bits", 0)),
        layer_bits=structure.get("layer_bits"),
    )
    return load_weights(model, p / WEIGHTS_FILE).eval()


def _copy_tokenizer(src: Path, out: Path) -> None:
    if src.resolve() == out.resolve():
        return
    load_tokenizer(src).save_pretrained(str(out))


def _remap_tokenizer(src: Path, out: Path, old_to_new: dict[int, int]) -> None:
    """Write ``src``'s tokenizer to ``out`` with its vocabulary reduced to ``old_to_new``."""
    file = src / "tokenizer.json"
    if not file.is_file():
        raise TaskError(
            f"prune_vocab export needs a fast tokenizer (tokenizer.json) in {str(src)!r}"
        )
    data: dict[str, Any] = json.loads(file.read_text(encoding="utf-8"))
    model = data.get("model", {})
    vocab = model.get("vocab")
    if model.get("type") not in ("WordPiece", "WordLevel") or not isinstance(vocab, dict):
        raise TaskError(
            f"prune_vocab export supports WordPiece/WordLevel tokenizers, not "
            f"{model.get('type')!r}; fix prune_vocab at false for this model"
        )
    new_vocab = {tok: old_to_new[i] for tok, i in vocab.items() if i in old_to_new}
    model["vocab"] = dict(sorted(new_vocab.items(), key=lambda kv: kv[1]))
    unk = model.get("unk_token")
    if unk is not None and unk not in new_vocab:
        raise TaskError(f"the unknown token {unk!r} was pruned from the vocabulary")

    def remap(obj: Any) -> Any:
        # Special-token ids appear in added_tokens, post_processor and padding.
        if isinstance(obj, dict):
            out_d = {}
            for k, v in obj.items():
                if k in ("id", "pad_id") and isinstance(v, int) and v in old_to_new:
                    out_d[k] = old_to_new[v]
                elif k == "ids" and isinstance(v, list):
                    out_d[k] = [old_to_new.get(i, i) if isinstance(i, int) else i for i in v]
                else:
                    out_d[k] = remap(v)
            return out_d
        if isinstance(obj, list):
            if len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], int):
                return [obj[0], old_to_new.get(obj[1], obj[1])]  # BertProcessing (token, id)
            return [remap(v) for v in obj]
        return obj

    for key in ("added_tokens", "post_processor", "padding"):
        if data.get(key) is not None:
            data[key] = remap(data[key])
    data["added_tokens"] = [
        t for t in data.get("added_tokens", []) if t.get("content") in new_vocab
    ]
    (out / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    if model.get("type") == "WordPiece":
        lines = [tok for tok, _ in sorted(new_vocab.items(), key=lambda kv: kv[1])]
        (out / "vocab.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in _TOKENIZER_FILES:
        if (src / name).is_file() and src.resolve() != out.resolve():
            shutil.copyfile(src / name, out / name)

