"""The GPU path's logic where no GPU is needed to check it: a worker that was given a GPU
but sees none, trials per GPU, and the refusals that come before any work.

A Ray cluster that *declares* a GPU on a machine without one (``num_gpus=1``) is real Ray:
it schedules GPU tasks and sets ``CUDA_VISIBLE_DEVICES``, while torch finds no CUDA device —
exactly the misconfigured node the worker must refuse. It runs in a subprocess so the test
session's own Ray cluster (CPU only) is left alone.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import optuna
import pytest
import torch

from search import Search
from search._errors import SearchArgumentError
from search._search import gpus_concurrency
from spaces import SearchSpace

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")


@pytest.mark.parametrize(("gpus", "per_trial", "expected"),
                         [(1, 1.0, 1), (1, 0.5, 2), (1, 0.25, 4), (2, 0.25, 8), (1, 0.3, 3),
                          (3, 1.0, 3), (0.5, 1.0, 1)])
def test_trials_at_once_follow_from_gpus_per_trial(gpus, per_trial, expected):
    assert gpus_concurrency(gpus, per_trial) == expected


def test_int4_is_refused_on_gpu_before_work(tmp_path, digits_task, ray_session):
    url = f"sqlite:///{tmp_path / 'gpu.db'}"
    space = SearchSpace.default().narrow("quant_bits", choices=[32, 16, 4])
    with pytest.raises(SearchArgumentError, match=r"quant_bits=4 runs on CPU only"):
        Search(digits_task, space, storage=url, gpus_per_trial=0.5, progress=False).run()
    assert optuna.get_all_study_names(url) == []


@no_cuda
def test_worker_given_a_gpu_it_cannot_see_fails_with_the_reason():
    from objectives import TrialFailed
    from search.run._worker import worker_device

    assert worker_device(0.0) == "cpu"
    with pytest.raises(TrialFailed, match=r"gpus_per_trial=0.5 but sees no CUDA device"):
        worker_device(0.5)


_FAKE_GPU_SEARCH = textwrap.dedent("""
    import logging, sys
    import optuna, ray
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False,
             log_to_driver=False, logging_level=logging.WARNING)
    from objectives.tasks import digits
    from search import Search
    from search._errors import SearchArgumentError
    from spaces import SearchSpace

    url = sys.argv[1]
    space = SearchSpace.default().narrow("quant_bits", choices=[32, 16])
    search = Search(digits(finetune_epochs=1), space, storage=url, gpus_per_trial=0.25,
                    n_trials=2, progress=False, ray_address=None)
    try:
        search.run()
    except SearchArgumentError as exc:
        print("REFUSED", exc)
    print("CONCURRENCY", search.max_concurrent_trials, search.measurement_lock)
    print("STUDIES", optuna.get_all_study_names(url))
""")


@no_cuda
def test_search_on_a_gpu_node_without_cuda_is_refused_and_writes_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'fake-gpu.db'}"
    script = tmp_path / "fake_gpu.py"
    script.write_text(_FAKE_GPU_SEARCH, encoding="utf-8")
    out = subprocess.run([sys.executable, str(script), url], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    refused = [x for x in lines if x.startswith("REFUSED")]
    assert refused and "sees no CUDA device" in refused[0], out.stdout + out.stderr[-2000:]
    assert len(refused[0].splitlines()) == 1
    # 0.25 GPU per trial on a cluster of 1 GPU: four trials at once, under the lock
    assert "CONCURRENCY 4 True" in lines
    assert "STUDIES []" in lines  # the baseline failed before the study was written
