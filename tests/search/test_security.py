"""No code runs from a file we read; storage passwords are never printed or logged."""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path

import optuna
import pytest
import torch

from search import redact
from search.study import scrub
from tests.search._servers import POSTGRES, delete_study, server_url, unique_study

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("spaces", "objectives", "search")

# Calls that can run code from the data they read.
_UNSAFE_CALLS = {
    ("yaml", "load"), ("yaml", "unsafe_load"), ("yaml", "full_load"), ("yaml", "load_all"),
    ("yaml", "unsafe_load_all"), ("pickle", "load"), ("pickle", "loads"),
    ("cloudpickle", "load"), ("cloudpickle", "loads"), ("dill", "load"), ("dill", "loads"),
    ("marshal", "load"), ("marshal", "loads"), ("shelve", "open"), ("joblib", "load"),
}


def _dotted(node: ast.AST) -> tuple[str, ...]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ()  # a method of a computed value, e.g. ``model.cpu().eval()``
    parts.append(node.id)
    return tuple(reversed(parts))


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            module = getattr(node, "module", None) or ""
            if {"pickle", "dill", "marshal", "shelve", "cloudpickle"} & {module, *names}:
                found.append(f"{path}:{node.lineno}: imports a pickle-like module")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if not name:  # e.g. a call on a subscript or a call result
            continue
        where = f"{path}:{node.lineno}: {'.'.join(name)}"
        keywords = {k.arg: k.value for k in node.keywords}
        if name in {("eval",), ("exec",)}:
            found.append(where)
        elif name[-2:] in _UNSAFE_CALLS:
            found.append(where)
        elif name[-2:] == ("torch", "load"):
            flag = keywords.get("weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                found.append(f"{where} without weights_only=True")
        elif name[-1] == "load" and isinstance(keywords.get("allow_pickle"), ast.Constant):
            if keywords["allow_pickle"].value:
                found.append(f"{where} with allow_pickle=True")
    return found


def test_library_code_never_loads_code_from_files():
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 20
    violations = [v for p in files for v in _violations(p)]
    assert not violations, "\n".join(violations)


def test_the_scan_catches_unsafe_loads(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle\nimport torch, yaml\n"
        "torch.load('m.pt')\nyaml.load(open('x'))\npickle.loads(b'')\neval('1')\n"
    )
    assert len(_violations(bad)) == 5


class _Payload:
    """Pickles to a call of ``os.system``: loading it with pickle would run a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_weights_file_is_refused_without_running_it(tmp_path):
    from objectives import TaskError, load_weights

    marker = tmp_path / "pwned"
    path = tmp_path / "model.safetensors"
    torch.save({"net.0.weight": _Payload(marker)}, path)
    with pytest.raises(TaskError, match="cannot read weights file"):
        load_weights(torch.nn.Sequential(torch.nn.Linear(2, 2)), path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresql+psycopg2://alice:pa55word@db.example:5432/studies", "pa55word"),
        ("mysql+pymysql://root:p%40ss%3Aw%2Frd@127.0.0.1/test", "p@ss:w/rd"),
        ("postgresql://u:tok%20en@h/db?sslmode=require", "tok en"),
    ],
)
def test_redact_and_scrub_hide_the_password(url, secret):
    shown = redact(url)
    assert secret not in shown and "***" in shown
    assert "p%40ss%3Aw%2Frd" not in shown and "tok%20en" not in shown
    text = f"connection for {secret} failed (url {url})"
    scrubbed = scrub(text, url)
    assert secret not in scrubbed and "p%40ss" not in scrubbed


@pytest.mark.slow
def test_a_search_never_prints_or_logs_its_storage_password(
    ray_session, digits_task, caplog, capfd
):
    """A real search, status and front on PostgreSQL with a password in the URL."""
    from search import Search
    from search._cli import main
    from spaces import SearchSpace

    base = server_url(POSTGRES)
    secret = "Sup3r-s3cret-pw"  # trust authentication accepts and ignores it
    url = base.replace("://postgres@", f"://postgres:{secret}@", 1)
    assert secret in url, "expected a postgres@ URL to add a password to"
    name = unique_study("password")
    caplog.set_level(logging.DEBUG)
    try:
        space = SearchSpace.default().fix("quant_bits", 8).fix("prune_ratio", 0.25)
        Search(digits_task, space, storage=url, study_name=name, n_trials=1,
               max_accuracy_drop=None).run()
        assert main(["-v", "status", "--storage", url, "--study", name]) == 0
        assert main(["front", "--storage", url, "--study", name]) == 0
        assert main(["status", "--storage", url, "--study", name + "-missing"]) == 2
        out, err = capfd.readouterr()
        assert "1 complete" in out and "no study named" in err
        assert secret not in out and secret not in err
        assert secret not in caplog.text
        study = optuna.load_study(study_name=name, storage=base)
        system = study._storage.get_study_system_attrs(study._study_id)
        stored = repr(study.user_attrs) + repr(system) + "".join(
            repr(t.user_attrs) + repr(t.system_attrs) for t in study.trials
        )
        assert secret not in stored
    finally:
        delete_study(base, name)
