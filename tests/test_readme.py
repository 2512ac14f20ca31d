"""The README's walkthrough runs top to bottom as a new user would follow it.

The CLI steps of "From clone to an exported recipe", then the Python block, in one
directory and on one database — with the trial budgets cut to 3 so the test stays short,
and the "within 1 point" bounds relaxed since 3 trials need not reach them (the only
changes made). Before the Python block had its own study name it stopped here with
``StudyMismatchError``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
SMALL = 3


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _walkthrough_commands() -> list[list[str]]:
    block = next(b for b in _blocks("bash") if "slimsearch run --task digits" in b)
    text = block.replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("slimsearch "):
            args = shlex.split(line)[1:]
            if "--trials" in args:
                args[args.index("--trials") + 1] = str(SMALL)
            commands.append(args)
    return commands


def test_readme_walkthrough_then_python_block(tmp_path, monkeypatch, ray_session):
    from search._cli import main

    monkeypatch.chdir(tmp_path)
    commands = _walkthrough_commands()
    assert [c[0] for c in commands] == ["run", "front", "report", "export", "apply"]
    for args in commands:
        if args[0] == "export":  # 3 trials may leave nothing within 1 point: allow any
            args[args.index("--max-accuracy-drop") + 1] = "1.0"
        assert main(args) == 0, args
    assert (tmp_path / "recipe.yaml").exists() and (tmp_path / "compressed").is_dir()

    code = _blocks("python")[0]
    assert 'storage="sqlite:///study.db"' in code  # the same database as the CLI steps
    code = code.replace("n_trials=40", f"n_trials={SMALL}")
    code = code.replace("max_accuracy_drop=0.01)\nfront", "max_accuracy_drop=1.0)\nfront")
    code = code.replace('best(prefer="size", max_accuracy_drop=0.01)', 'best(prefer="size")')
    namespace: dict[str, object] = {}
    try:
        exec(compile(code, "README.md", "exec"), namespace)
    except Exception as exc:  # pragma: no cover - the failure is the message
        pytest.fail(f"README's Python block failed after the CLI steps: {exc!r}")
    assert (tmp_path / "pareto.png").exists() and (tmp_path / "recipe.yaml").exists()
