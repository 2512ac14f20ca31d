"""A search on a Ray cluster with the study in PostgreSQL, so every machine shares it.

On the head machine and each worker machine::

    ray start --head --port 6379                  # head
    ray start --address HEAD_IP:6379              # every worker machine

then, on the head::

    python examples/ray_cluster_postgres.py \\
        --ray-address auto \\
        --storage postgresql+psycopg2://USER:PASSWORD@DB_HOST:5432/DB --trials 60 --workers 8

Trials are scheduled on any node with a free CPU (``task.threads`` each); every trial's
result is committed to PostgreSQL as it finishes, so the front can be read — with
``slimsearch front`` or ``report``, or ``optuna-dashboard`` — from any machine while the
search runs, and a second driver started with the same ``--storage``/``--study`` joins
the same study instead of repeating it. The task must be importable on every node (here
the built-in digits task; install your own code on the workers, or use Ray's
``runtime_env``). MySQL/MariaDB URLs (``mysql+pymysql://...``) work the same way.
"""

from __future__ import annotations

import argparse

from objectives.tasks import digits
from search import Search, redact


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-address", default="auto", help="auto, or HEAD_IP:6379")
    parser.add_argument("--storage", required=True, help="postgresql+psycopg2://... URL")
    parser.add_argument("--study", default="digits-cluster")
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--workers", type=int, default=8, help="trials at once, cluster-wide")
    parser.add_argument("--epochs", type=int, default=8, help="distillation epochs per trial")
    args = parser.parse_args(argv)

    import ray

    ray.init(address=args.ray_address, include_dashboard=False, log_to_driver=False)
    cpus = int(ray.cluster_resources().get("CPU", 0))
    nodes = sum(1 for n in ray.nodes() if n["Alive"])
    print(f"Ray cluster: {nodes} node(s), {cpus} CPUs; study in {redact(args.storage)}")

    search = Search(digits(finetune_epochs=args.epochs), storage=args.storage,
                    study_name=args.study, n_trials=args.trials,
                    max_concurrent_trials=min(args.workers, max(cpus, 1)))
    front = search.run()
    ray.shutdown()

    base = front.baseline
    print(f"Pareto front of {args.study!r}: {len(front)} of {len(front.trials)} trials")
    for c in front:
        print(f"  trial {c.trial:3d}: accuracy {c.accuracy:.4f} "
              f"({100 * (c.accuracy - base['accuracy']):+.2f} pts), "
              f"{base['latency_ms'] / c.latency_ms:.1f}x faster, "
              f"{base['size_bytes'] / c.size_bytes:.1f}x smaller")


if __name__ == "__main__":
    main()
