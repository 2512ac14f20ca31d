"""Third-party noise stays out of a Python-API user's terminal; heavy libraries load lazily.

Each check runs a plain Python script in a fresh interpreter — as a user runs one — so
no pytest warning filter or captured stream hides what would be printed.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.objectives.tiny_bert import tiny_bert_dir

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("ray", "transformers", "torchao", "matplotlib")
NOISE = ("Failed to load", "DeprecationWarning", "FutureWarning", "_pytree")


def _run(script: str, tmp_path: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "SLIMSEARCH_CACHE_DIR": str(tmp_path / "cache"),
    }
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout,
    )


def test_importing_the_packages_is_silent_and_loads_no_heavy_library(tmp_path):
    proc = _run(
        """
        import json, sys
        import search, objectives, spaces
        import objectives.tasks, objectives.operators, objectives.measure
        print(json.dumps(sorted(sys.modules)))
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    loaded = {name.split(".")[0] for name in json.loads(proc.stdout)}
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory.mktemp("quiet-bert"))


def test_text_task_pipeline_prints_no_third_party_noise(tmp_path, bert_dir):
    # hf_text_task imports transformers (which imports torchao); int4 quantization
    # imports torchao.quantization; export loads the model back through transformers.
    proc = _run(
        f"""
        import sys
        from objectives import CompressionConfig, evaluate, load_compressed
        from objectives import load_pretrained_compressed, save_pretrained_compressed
        from objectives.tasks import generate_reviews, hf_text_task

        texts, labels = generate_reviews(90, seed=5)
        task = hf_text_task({str(bert_dir)!r}, (texts[:60], labels[:60]),
                            (texts[60:75], labels[60:75]), (texts[75:], labels[75:]),
                            max_length=16, finetune_epochs=1, latency_batch_size=4)
        config = CompressionConfig(quant_bits=4, attn_prune_ratio=0.5)
        result = evaluate(task, config, output_dir="trial")
        model = load_compressed(task, config, "trial/model.safetensors")
        save_pretrained_compressed(model, "export", tokenizer_dir=task.tokenizer_dir,
                                   quant_bits=4)
        load_pretrained_compressed("export")
        modules = {{name.split(".")[0] for name in sys.modules}}
        assert {{"transformers", "torchao"}} <= modules, modules
        print("accuracy", result.accuracy)
        """,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "accuracy" in proc.stdout
    noisy = [line for line in proc.stderr.splitlines() if any(n in line for n in NOISE)]
    assert not noisy, proc.stderr


def test_quiet_imports_leave_no_filter_behind():
    from torch import nn

    from objectives import quantize

    quantize(nn.Sequential(nn.Linear(32, 8)), 4)  # imports torchao through the quiet import
    for name in ("torchao", "torch.utils._pytree"):
        assert logging.getLogger(name).filters == []
