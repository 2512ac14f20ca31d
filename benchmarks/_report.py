"""Write benchmark sections into docs/benchmarks.md, keeping the other sections."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
HEADER = """# Benchmarks

Measured with `make bench` (or `python -m benchmarks --only NAME`), never in CI. Each section
says the command that produced it and the machine. Ratios are measured side by side in one
run; absolute times depend on the machine and on what else it was doing.
"""


def _revision() -> str:
    """The commit the code was run at ("?" outside git), read when the benchmark starts."""
    root = DOC.parent.parent
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True, cwd=root).stdout.strip()
    # "+uncommitted changes": code differs from the commit, so the commit alone does not
    # reproduce the figures (docs/, which benchmarks write, and Markdown do not count).
    changed = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!docs", ":!*.md"],
                             capture_output=True, text=True, cwd=root).stdout.strip()
    return f"{rev} + uncommitted changes" if rev and changed else (rev or "?")


_REVISION = _revision()  # at import: later commits while a benchmark runs do not count


def machine() -> str:
    """One line describing where the numbers were measured."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        cpu = model
    except (OSError, StopIteration):
        pass
    from objectives import INFERENCE_FLAGS, cpu_flags

    flags = cpu_flags()
    cpu += f"; flags: {', '.join(flags) if flags else 'none of ' + ', '.join(INFERENCE_FLAGS)}"
    return (f"{os.cpu_count()} cores ({cpu}), torch {torch.__version__}, "
            f"{time.strftime('%Y-%m-%d')}, commit {_REVISION}")


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` in docs/benchmarks.md."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else HEADER
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + block + "\n"
    )
    DOC.write_text(text, encoding="utf-8")


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def search_minutes(study: Any) -> float:
    """Minutes from an Optuna study's first trial start to its last trial end (what the
    search took, whichever process ran it)."""
    starts = [t.datetime_start for t in study.trials if t.datetime_start]
    ends = [t.datetime_complete for t in study.trials if t.datetime_complete]
    return (max(ends) - min(starts)).total_seconds() / 60 if starts and ends else 0.0
