"""The ``slimsearch`` command line: run, status, front, report, export, apply, demo.

Every error a user can cause prints one line on stderr and exits with status 2;
nothing is written to the study when the input is rejected.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from search.view import format_summary, plot_front, print_front

EXIT_USAGE = 2
EXIT_INTERNAL = 1
DEFAULT_DEMO_DIR = "slimsearch-demo"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _float_in(ok: Callable[[float], bool], words: str) -> Callable[[str], float]:
    """An argparse type: a number for which ``ok`` holds (``words`` says which, in the error)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {words}")
        return value

    return parse


_fraction = _float_in(lambda v: 0.0 <= v <= 1.0,
                      "a fraction in [0, 1] (0.01 means 1 accuracy point)")
_gpus = _float_in(lambda v: 0.0 <= v <= 8.0,
                  "a GPU count in [0, 8] (0 = CPU, 0.25 = a quarter of one GPU)")
_seconds = _float_in(lambda v: 0.0 <= v <= 600.0, "a number of seconds in [0, 600]")
_confidence = _float_in(lambda v: 0.5 <= v < 1.0, "a confidence in [0.5, 1) (0.9 means 90 %)")


def _int_at_least(minimum: int, words: str) -> Callable[[str], int]:
    """An argparse type: an integer ≥ ``minimum`` (``words`` says so in the error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be {words}")
        return value

    return parse


_positive = _int_at_least(1, "at least 1")
_non_negative = _int_at_least(0, "0 or more")


def _task_name(text: str) -> str:
    from objectives.tasks import TASKS, is_task_reference

    if text in TASKS or is_task_reference(text):
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a built-in task ({', '.join(sorted(TASKS))}) nor module:function"
    )


def _build_task(name: str) -> Any:
    """The task ``name`` names; a user's module is shipped to Ray workers by value."""
    from objectives.tasks import get_task, is_task_reference, load_task_factory

    if is_task_reference(name):
        import ray.cloudpickle

        # Workers may not import the user's module (a file outside the path): ship its
        # classes and functions by value with the task (public cloudpickle API).
        ray.cloudpickle.register_pickle_by_value(load_task_factory(name)[1])
    return get_task(name)


def build_parser() -> argparse.ArgumentParser:
    from objectives.tasks import TASKS
    from search._search import DEFAULT_STORAGE
    from search.results import PREFER_CHOICES

    parser = _Parser(prog="slimsearch", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log more and show tracebacks; -vv adds Optuna's and Ray's logs")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run or resume a compression search")
    run.add_argument("--task", required=True, type=_task_name, metavar="TASK",
                     help=f"built-in task ({', '.join(sorted(TASKS))}) or your own factory "
                          "returning an objectives.Task: module:function or file.py:function")
    run.add_argument("--trials", type=_positive, default=30,
                     help="total finished trials in the study (COMPLETE + early-stopped)")
    run.add_argument("--workers", type=_positive, default=None,
                     help="trials at once (default 1 on CPU; with --gpus-per-trial, as many "
                          "as the cluster's GPUs hold)")
    run.add_argument("--gpus-per-trial", type=_gpus, default=0.0,
                     help="GPUs per trial (0 = CPU; 0.25 shares one GPU between four trials)")
    run.add_argument("--storage", default=DEFAULT_STORAGE, help="SQLAlchemy URL of the study")
    run.add_argument("--study", default=None, help="study name (default: the task name)")
    run.add_argument("--max-accuracy-drop", type=_fraction, default=None,
                     help="largest validation accuracy drop vs the teacher, e.g. 0.01")
    run.add_argument("--accuracy-confidence", type=_confidence, default=None,
                     help="judge the drop on the paired lower bound at this confidence "
                          "(default 0.9 for a new study)")
    run.add_argument("--seed", type=_non_negative, default=0)
    run.add_argument("--retime-rounds", type=_non_negative, default=3,
                     help="re-time the front alone, interleaved with the teacher, in this "
                          "many rounds before returning (0 = off)")
    run.add_argument("--retime-seconds", type=_seconds, default=None,
                     help="go on re-timing for at least this many seconds (default: "
                          "$SLIMSEARCH_RETIME_SECONDS, else 5; a shared CPU's speed "
                          "switches between regimes lasting seconds)")
    run.add_argument("--space", default=None, help="search-space YAML file")
    run.add_argument("--ray-address", default=None, help="existing Ray cluster (auto|HOST:PORT)")
    run.add_argument("--plot", default=None, help="also write the Pareto plot PNG here")
    run.add_argument("--json", action="store_true", help="print the front as JSON")
    run.add_argument("--no-progress", action="store_true",
                     help="no live display (off a terminal: no progress log lines)")
    run.add_argument("--early-stopping", action="store_true",
                     help="stop trials that cannot meet the accuracy floor or are already "
                          "dominated (recorded as PRUNED); pays when fine-tuning dominates")
    run.add_argument("--warm-start", action="append", default=[], metavar="STUDY",
                     help="a new study first re-evaluates this earlier study's front "
                          "(same storage; repeatable)")

    status = sub.add_parser(
        "status", help="trial counts, failures with reasons, best so far of a study"
    )
    status.add_argument("--storage", required=True)
    status.add_argument("--study", required=True)
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="also print each failed trial's worker traceback")

    front = sub.add_parser("front", help="show a study's Pareto front")
    front.add_argument("--storage", required=True)
    front.add_argument("--study", required=True)
    front.add_argument("--json", action="store_true", help="print one JSON object")
    front.add_argument("--plot", default=None, help="write the Pareto plot PNG here")

    report = sub.add_parser("report", help="write an HTML report (front, trade-offs, history)")
    report.add_argument("--storage", required=True)
    report.add_argument("--study", required=True)
    report.add_argument("-o", "--output", default="report.html", help="HTML file to write")
    report.add_argument("--png-dir", default=None, help="also write the figures as PNGs here")

    export = sub.add_parser("export", help="export a front point as a recipe")
    export.add_argument("--storage", required=True)
    export.add_argument("--study", required=True)
    export.add_argument("--prefer", choices=PREFER_CHOICES, default="latency")
    export.add_argument("--trial", type=_non_negative, default=None, help="a front trial number")
    export.add_argument("--max-accuracy-drop", type=_fraction, default=None,
                        help="keep only points within this drop at the study's confidence, "
                             "on the confirmation rows too (default: the study's drop)")
    export.add_argument("-o", "--output", required=True, help="recipe YAML to write")

    apply = sub.add_parser("apply", help="re-apply a recipe to its (built-in) task")
    apply.add_argument("recipe", help="recipe YAML")
    apply.add_argument("-o", "--output", default=None, help="directory for model + recipe")
    apply.add_argument("--task", type=_task_name, default=None, metavar="TASK",
                       help="the task to apply it to when it is not built in: module:function "
                            "or file.py:function (its fingerprint must match the recipe's)")
    apply.add_argument("--device", choices=("cpu", "cuda"), default=None,
                       help="re-run on this device kind (default: the recipe's)")
    apply.add_argument("--json", action="store_true", help="print one JSON object")

    demo = sub.add_parser("demo", help="search the digits task, export and apply a recipe")
    demo.add_argument("--trials", type=_positive, default=40)
    demo.add_argument("--workers", type=_positive, default=2)
    demo.add_argument("--out", default=DEFAULT_DEMO_DIR, help="output directory")
    demo.add_argument("--no-progress", action="store_true", help="no live display")
    return parser


# --------------------------------------------------------------------------- commands
def _cmd_run(args: argparse.Namespace) -> int:
    from search._search import Search
    from spaces import SearchSpace

    space = SearchSpace.load(args.space) if args.space else None
    given: dict[str, Any] = {}
    if args.max_accuracy_drop is not None:  # else: the stored value, or the default
        given["max_accuracy_drop"] = args.max_accuracy_drop
    if args.accuracy_confidence is not None:
        given["accuracy_confidence"] = args.accuracy_confidence
    search = Search(
        _build_task(args.task),
        space,
        storage=args.storage,
        study_name=args.study,
        n_trials=args.trials,
        max_concurrent_trials=args.workers,
        gpus_per_trial=args.gpus_per_trial,
        **given,
        seed=args.seed,
        retime_rounds=args.retime_rounds,
        retime_seconds=args.retime_seconds,
        ray_address=args.ray_address,
        progress=False if args.no_progress else None,
        early_stopping=args.early_stopping,
        warm_start=args.warm_start,
    )
    front = search.run()
    if args.plot:
        plot_front(front, args.plot)
    if args.json:
        print(front.to_json())
    else:
        print_front(front)
        _print_failures(search)
    return 0


def _print_failures(search: Any) -> None:
    """After a run: the study's failed trials with their reasons (the last few)."""
    from search.results import status_of
    from search.study import StudyInfo, redact
    from search.view import format_failures

    study = search.study
    if study is None:
        return
    status = status_of(study, StudyInfo.from_study(study, search.storage_url))
    if status.failures:
        print(format_failures(status, max_failures=5))
        print(f"  (all of them: slimsearch status --storage {redact(search.storage_url)} "
              f"--study {study.study_name})")


def _cmd_status(args: argparse.Namespace) -> int:
    from search.results import study_status
    from search.view import format_status

    status = study_status(args.storage, args.study)
    tracebacks = bool(getattr(args, "verbose", 0))
    print(json.dumps(status.to_dict()) if args.json
          else format_status(status, tracebacks=tracebacks))
    return 0


def _cmd_front(args: argparse.Namespace) -> int:
    from search.results import load_front

    front, _ = load_front(args.storage, args.study)
    if args.plot:
        plot_front(front, args.plot)
    if args.json:
        print(json.dumps(front.to_dict()))
    else:
        print_front(front)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from search.view import write_report

    path = write_report(args.storage, args.study, args.output, png_dir=args.png_dir)
    print(f"wrote {path}" + (f" and the figures under {args.png_dir}/" if args.png_dir else ""))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from search.results import Recipe, load_front

    front, info = load_front(args.storage, args.study)
    given = {} if args.max_accuracy_drop is None else {"max_accuracy_drop": args.max_accuracy_drop}
    recipe = Recipe.from_front(front, info, prefer=args.prefer, trial=args.trial, **given)
    path = recipe.save(args.output)
    line = format_summary(recipe.metrics.model_dump(), recipe.baseline.model_dump(),
                          recipe.accuracy_confidence)
    print(f"wrote {path} (trial {recipe.source.trial if recipe.source else '?'}: {line})")
    return 0


def _cmd_apply(args: argparse.Namespace) -> int:
    from objectives import TaskError
    from objectives.tasks import TASKS, get_task
    from search.results import Recipe

    recipe = Recipe.load(args.recipe)
    if args.task is not None:
        task = get_task(args.task)
    elif recipe.task.name not in TASKS:
        raise TaskError(
            f"recipe {args.recipe!r} was made for your own task {recipe.task.name!r}; "
            "name its factory with --task module:function or --task file.py:function"
        )
    else:
        task = get_task(recipe.task.name, **recipe.task.spec)
    applied = recipe.apply(task, output_dir=args.output, device=args.device)
    metrics = applied.metrics()
    if args.json:
        print(json.dumps(metrics))
    else:
        base, conf = recipe.baseline.model_dump(), recipe.accuracy_confidence
        print(f"re-applied {args.recipe}: {format_summary(metrics, base, conf)}")
        print(f"  searched: {format_summary(recipe.metrics.model_dump(), base, conf)}")
        here = metrics.get("hardware")
        if recipe.hardware and here and here != recipe.hardware:
            print(f"  note: searched on {recipe.hardware}; re-measured on {here} "
                  "(latencies from different hardware are not comparable)")
        elif here:
            print(f"  measured on {here}")
        if args.output:
            print(f"  wrote {Path(args.output) / 'model.safetensors'} and recipe.yaml")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from objectives.tasks import digits
    from search._search import Search
    from search.results import Recipe, load_front
    from search.view import write_report

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    print(f"slimsearch demo: {args.trials} trials on the digits task, {args.workers} workers")
    print(f"  study: {storage} (run again to resume; raise --trials to continue)")
    task = digits()
    search = Search(task, storage=storage, study_name="digits-demo", n_trials=args.trials,
                    max_concurrent_trials=args.workers,
                    progress=False if args.no_progress else None)
    front = search.run()
    print_front(front)
    plot = plot_front(front, out / "pareto.png")
    (out / "front.json").write_text(front.to_json(), encoding="utf-8")
    report = write_report(storage, "digits-demo", out / "report.html")
    front, info = load_front(storage, "digits-demo")
    recipe = Recipe.from_front(front, info, prefer="size")  # within the study's drop
    recipe_path = recipe.save(out / "recipe.yaml")
    applied = Recipe.load(recipe_path).apply(task, output_dir=out / "model")
    print(f"\nchosen (smallest within the accuracy constraint): trial {recipe.source.trial}"
          if recipe.source else "")
    base, conf = recipe.baseline.model_dump(), recipe.accuracy_confidence
    print(f"  searched:   {format_summary(recipe.metrics.model_dump(), base, conf)}")
    print(f"  re-applied: {format_summary(applied.metrics(), base, conf)}")
    print(f"wrote {plot}, {report}, {out / 'front.json'}, {recipe_path}, {out / 'model'}/")
    return 0


# -------------------------------------------------------------------------------- main
_COMMANDS = {
    "run": _cmd_run,
    "status": _cmd_status,
    "front": _cmd_front,
    "report": _cmd_report,
    "export": _cmd_export,
    "apply": _cmd_apply,
    "demo": _cmd_demo,
}


def _configure_logging(verbose: int) -> None:
    from search.view import configure_logging

    configure_logging(verbose)


def _user_errors() -> tuple[type[BaseException], ...]:
    from objectives import TaskError
    from search._errors import SlimsearchError
    from spaces import SpaceError

    return (SlimsearchError, SpaceError, TaskError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``slimsearch`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return _COMMANDS[args.command](args)
    except _user_errors() as exc:
        print(f"slimsearch: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("slimsearch: interrupted; completed trials are saved — run again to resume",
              file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose:
            raise
        print(f"slimsearch: internal error: {type(exc).__name__}: {_one_line(exc)} "
              "(run with --verbose for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
