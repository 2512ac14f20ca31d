"""Quickstart: search the embedded digits task from Python and export the smallest model.

    python examples/quickstart.py                 # 20 trials, about a minute on 2 cores
    python examples/quickstart.py --trials 4      # a smoke run

Running it again continues the same study (``quickstart.db``) instead of starting over.
"""

from __future__ import annotations

import argparse

from objectives.tasks import digits
from search import Recipe, Search, StudyInfo, plot_front


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="COMPLETE trials in the study")
    parser.add_argument("--workers", type=int, default=2, help="trials at once")
    parser.add_argument("--storage", default="sqlite:///quickstart.db")
    parser.add_argument("--epochs", type=int, default=8, help="distillation epochs per trial")
    parser.add_argument("--out", default="quickstart-out", help="plot and recipe go here")
    args = parser.parse_args(argv)

    task = digits(finetune_epochs=args.epochs)  # an MLP teacher on 8×8 digits, trained once
    search = Search(task, storage=args.storage, study_name="quickstart", n_trials=args.trials,
                    max_concurrent_trials=args.workers, max_accuracy_drop=0.01)
    front = search.run()

    base = front.baseline
    print(f"teacher: accuracy {base['accuracy']:.4f}, {base['latency_ms']:.3f} ms, "
          f"{base['size_bytes'] / 1024:.1f} KiB")
    for c in front:  # the Pareto front, fastest first
        print(f"trial {c.trial:3d}: accuracy {c.accuracy:.4f}, {c.latency_ms:.3f} ms, "
              f"{c.size_bytes / 1024:.1f} KiB  {dict(c.params)}")

    best = front.best(prefer="size", max_accuracy_drop=0.01)
    print(f"smallest within 1 point: trial {best.trial}, "
          f"{base['size_bytes'] / best.size_bytes:.1f}x smaller, "
          f"{base['latency_ms'] / best.latency_ms:.1f}x faster")
    plot_front(front, f"{args.out}/pareto.png")
    info = StudyInfo.from_study(search.study, args.storage)  # what the study was made for
    recipe = Recipe.from_candidate(best, info)
    print(f"wrote {recipe.save(f'{args.out}/recipe.yaml')}")


if __name__ == "__main__":
    main()
