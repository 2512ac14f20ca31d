"""Export a Pareto-front point as a recipe, re-apply it, and use the compressed model.

    python examples/export_apply.py --storage sqlite:///quickstart.db --study quickstart

A recipe is a YAML file: the compression config, the seed, the task's fingerprint and
the metrics the search measured. ``apply`` re-runs that compression on the same task
and measures again; the model it writes loads without slimsearch's search machinery.
If the study does not exist yet, a small one is searched first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from objectives import load_compressed
from objectives.tasks import get_task
from search import Recipe, Search, StudyNotFoundError, load_front


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="sqlite:///quickstart.db")
    parser.add_argument("--study", default="quickstart")
    parser.add_argument("--prefer", choices=["latency", "size", "accuracy"], default="latency")
    parser.add_argument("--trials", type=int, default=8, help="if the study must be created")
    parser.add_argument("--out", default="compressed", help="model + recipe directory")
    args = parser.parse_args(argv)

    try:
        front, info = load_front(args.storage, args.study)
    except StudyNotFoundError:
        print(f"no study {args.study!r} yet: searching {args.trials} trials on digits first")
        Search(get_task("digits"), storage=args.storage, study_name=args.study,
               n_trials=args.trials).run()
        front, info = load_front(args.storage, args.study)

    # 1. Export: the fastest point that loses at most one accuracy point.
    recipe = Recipe.from_front(front, info, prefer=args.prefer, max_accuracy_drop=0.01)
    path = recipe.save(Path(args.out) / "exported.yaml")
    print(f"exported trial {recipe.source.trial} to {path}: {recipe.compression}")

    # 2. Apply: anyone with the recipe and the same task gets the same model again.
    recipe = Recipe.load(path)
    task = get_task(recipe.task.name, **recipe.task.spec)  # built-in tasks rebuild by name
    applied = recipe.apply(task, output_dir=args.out)
    m = applied.metrics()
    print(f"re-applied: accuracy {m['accuracy']:.4f} (searched {recipe.metrics.accuracy:.4f}), "
          f"{m['latency_ms']:.3f} ms, {m['size_bytes'] / 1024:.1f} KiB")

    # 3. Use it: rebuild the compressed model from the weights file alone.
    model = load_compressed(task, recipe.compression, Path(args.out) / "model.safetensors")
    with torch.inference_mode():
        predicted = model(task.test.inputs).argmax(dim=-1)
    accuracy = (predicted == task.test.labels).float().mean().item()
    print(f"loaded {args.out}/model.safetensors: test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
