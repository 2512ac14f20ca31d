"""Resume: a study lives in its database, so a search can stop and continue later.

    python examples/resume.py --first 6 --then 12

It runs the study to ``--first`` trials, stops, then opens it again — as you would after
Ctrl-C, a crash or a reboot — and continues to ``--then`` trials. ``n_trials`` is the
study's total, so the second run adds only the difference; completed trials are never
re-run, and a fixed seed does not replay the configurations already tried. The same
works from the CLI: run ``slimsearch run --task digits --storage URL --trials N`` again.
"""

from __future__ import annotations

import argparse

import optuna
from optuna.trial import TrialState

from objectives.tasks import digits
from search import Search


def finished(storage: str, name: str) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE trials and trials stopped early: what counts towards ``n_trials``."""
    study = optuna.load_study(study_name=name, storage=storage)
    return study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=6, help="trials in the first run")
    parser.add_argument("--then", type=int, default=12, help="total after resuming")
    parser.add_argument("--epochs", type=int, default=8, help="distillation epochs per trial")
    parser.add_argument("--storage", default="sqlite:///resume.db")
    args = parser.parse_args(argv)
    task = digits(finetune_epochs=args.epochs)

    Search(task, storage=args.storage, study_name="resume", n_trials=args.first).run()
    before = {t.number: t.params for t in finished(args.storage, "resume")}
    print(f"first run: {len(before)} trials finished")

    # Later, in a new process: the same task, storage and study name. The search space,
    # accuracy constraint, seed and teacher baseline are read back from the study.
    front = Search(task, storage=args.storage, study_name="resume", n_trials=args.then).run()
    after = {t.number: t.params for t in finished(args.storage, "resume")}
    kept = all(after[n] == p for n, p in before.items())
    print(f"after resuming: {len(after)} trials finished ({len(after) - len(before)} new), "
          f"earlier trials kept unchanged: {kept}; Pareto front: {len(front)} trials")


if __name__ == "__main__":
    main()
