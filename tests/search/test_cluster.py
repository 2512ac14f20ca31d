"""A search on a two-node Ray cluster with a shared PostgreSQL study (issue: many machines).

Runs in a subprocess so its cluster does not disturb the session's local Ray. Needs the
PostgreSQL URL from ``SLIMSEARCH_TEST_POSTGRES_URL`` (set by ``.ci/run``): skipped without
it outside CI, never skipped in CI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid

import optuna
import pytest

PG_URL = os.environ.get("SLIMSEARCH_TEST_POSTGRES_URL")

SCRIPT = textwrap.dedent(
    """
    import json, logging, sys
    import ray
    from ray.cluster_utils import Cluster
    from objectives.tasks import digits
    from search import Search

    url, name = sys.argv[1], sys.argv[2]
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    front = Search(digits(finetune_epochs=2, latency_batch_size=64), storage=url,
                   study_name=name, n_trials=6, max_concurrent_trials=2, progress=False,
                   ray_address=cluster.address).run()
    ray.shutdown()
    cluster.shutdown()
    print(json.dumps({"nodes": nodes, "front": len(front)}))
    """
)


@pytest.mark.server
def test_two_node_cluster_with_shared_postgres(tmp_path):
    if not PG_URL:
        if os.environ.get("CI") == "true":
            pytest.fail("SLIMSEARCH_TEST_POSTGRES_URL must be set in CI")
        pytest.skip("set SLIMSEARCH_TEST_POSTGRES_URL to run the two-node cluster test")
    name = f"cluster-{uuid.uuid4().hex[:8]}"
    script = tmp_path / "cluster.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "SLIMSEARCH_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, str(script), PG_URL, name], capture_output=True,
                          text=True, timeout=600, env=env)
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert len(out["nodes"]) == 2
        study = optuna.load_study(study_name=name, storage=PG_URL)
        finished = [t for t in study.trials if t.state.is_finished()]
        assert len([t for t in finished if t.state != optuna.trial.TrialState.FAIL]) == 6
        used = {t.user_attrs.get("node") for t in study.trials if t.user_attrs.get("node")}
        assert used == set(out["nodes"]), "trials must run on both nodes"
        assert out["front"] >= 1
    finally:
        try:
            optuna.delete_study(study_name=name, storage=PG_URL)
        except KeyError:
            pass
