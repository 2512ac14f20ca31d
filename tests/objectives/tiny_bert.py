"""A tiny BERT classifier directory and text task, built from a config in seconds."""

from __future__ import annotations

from pathlib import Path

import torch

from objectives.tasks import TextTask, generate_reviews, hf_text_task

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_bert_dir(root: Path, num_labels: int = 6) -> Path:
    """Write a 2-layer, hidden-32, 4-head BERT with a WordPiece tokenizer to ``root``.

    The vocabulary is the generated reviews' words plus 300 tokens the data never uses
    (so vocabulary pruning has something to drop); [PAD] is 0, [UNK] 51, [CLS] 52,
    [SEP] 53, [MASK] 54.
    """
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    texts, _ = generate_reviews(3000, seed=123)
    words = sorted({w.strip(".,") for t in texts for w in t.split()} - {""})
    unused = [f"unused{i}" for i in range(300)]
    # As in BERT's vocabulary, unused tokens sit before [UNK] and after the words.
    tokens = SPECIALS[:1] + unused[:50] + SPECIALS[1:] + [".", ","] + words + unused[50:]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    BertTokenizer(vocab=vocab).save_pretrained(str(root))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=num_labels,
        pad_token_id=0,
    )
    BertForSequenceClassification(config).save_pretrained(str(root))
    return root


def tiny_text_task(model_dir: Path, **overrides: object) -> TextTask:
    """600/150/150 generated reviews on the tiny BERT, its teacher fine-tuned 12 epochs."""
    texts, labels = generate_reviews(900, seed=5)
    settings: dict[str, object] = {
        "name": "tiny_text",
        "max_length": 24,
        "teacher_epochs": 12,
        "teacher_learning_rate": 3e-3,
        "finetune_epochs": 1,
        "latency_batch_size": 8,
    }
    settings.update(overrides)
    return hf_text_task(
        model_dir,
        (texts[:600], labels[:600]),
        (texts[600:750], labels[600:750]),
        (texts[750:], labels[750:]),
        **settings,  # type: ignore[arg-type]
    )
