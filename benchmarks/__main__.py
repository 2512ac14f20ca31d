"""``python -m benchmarks [--only NAME ...]``: run benchmarks, write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import logging
import os

import ray

NAMES = ("hypervolume", "orchestration", "quantization", "logit_cache", "families", "decoder",
         "mixed", "trust", "noise", "layer_timing")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--only", nargs="*", choices=NAMES, default=list(NAMES))
    parser.add_argument("--task", default="digits",
                        help="task for the hypervolume, mixed, trust and layer_timing "
                             "benchmarks")
    parser.add_argument("--trials", type=int, default=None,
                        help="trials per search (default: each benchmark's own)")
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="mixed: the first seed (seeds run from it on), to finish an "
                             "earlier run's seeds in another session")
    parser.add_argument("--storage", default=None,
                        help="mixed, trust: a study database to run in "
                             "(finished studies are reused)")
    parser.add_argument("--arms", nargs="*", default=None,
                        help="mixed: the arms to run (default all: 'uniform', 'per-layer', "
                             "'per-layer, latency saving', 'per-layer or uniform', "
                             "'per-layer, fp32 reachable')")
    parser.add_argument("--sampler", default="tpe", choices=("tpe", "multivariate"),
                        help="mixed: the arms' sampler (default the search's own, "
                             "independent TPE; 'multivariate' is TPE with "
                             "multivariate=True, group=True)")
    parser.add_argument("--workers", type=int, default=2,
                        help="mixed: trials at a time (1 times each trial alone)")
    args = parser.parse_args()
    if args.seeds < 1 or args.first_seed < 0:
        parser.error(f"--seeds {args.seeds} --first-seed {args.first_seed}: need at least one "
                     "seed and a first seed of 0 or more")
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: need at least one trial at a time")
    if args.first_seed and set(args.only) - {"mixed"}:
        parser.error(f"--first-seed {args.first_seed}: only the mixed benchmark's section "
                     "records a first seed; run the others from seed 0 (--only mixed)")
    seeds = tuple(range(args.first_seed, args.first_seed + args.seeds))
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        if "hypervolume" in args.only:
            from benchmarks._hypervolume import run
            from objectives.tasks import get_task

            run(lambda: get_task(args.task), args.task, n_trials=args.trials or 90,
                seeds=seeds)
        if "noise" in args.only:
            from benchmarks._noise import run as run_noise

            run_noise()
        if "orchestration" in args.only:
            from benchmarks._orchestration import run as run_orchestration

            run_orchestration()
        if "quantization" in args.only:
            from benchmarks._quantization import run as run_quantization

            run_quantization()
        if "families" in args.only:
            from benchmarks._families import run as run_families

            run_families()
        if "decoder" in args.only:
            from benchmarks._decoder import run as run_decoder

            run_decoder(args.trials or 30)
        if "mixed" in args.only:
            from benchmarks._mixed import run as run_mixed
            from objectives.tasks import get_task

            run_mixed(lambda: get_task(args.task), args.task,
                      n_trials=args.trials or 30,
                      seeds=seeds, storage=args.storage, sampler=args.sampler,
                      workers=args.workers,
                      **({"arms": tuple(args.arms)} if args.arms else {}))
        if "trust" in args.only:
            from benchmarks._trust import run as run_trust
            from objectives.tasks import get_task

            if args.task == "digits":
                run_trust(n_trials=args.trials or 24, seeds=seeds,
                          storage=args.storage)
            else:
                run_trust(lambda: get_task(args.task), args.task,
                          n_trials=args.trials or 24, seeds=seeds,
                          storage=args.storage)
        if "layer_timing" in args.only:
            from benchmarks._layer_timing import run as run_layer_timing
            from objectives.tasks import get_task

            run_layer_timing(lambda: get_task(args.task), args.task)
        if "logit_cache" in args.only:
            from benchmarks._logit_cache import run as run_logit_cache

            run_logit_cache()
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
