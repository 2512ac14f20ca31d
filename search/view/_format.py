"""How numbers are written everywhere a person reads them: terminal, logs, HTML, plots.

One function per kind of number, so the CLI tables, ``status``, the progress panel and
the report print a metric the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LABELS = {"accuracy": "accuracy", "latency_ms": "latency", "size_bytes": "size"}
AXIS_LABELS = {
    "accuracy": "validation accuracy",
    "latency_ms": "latency (ms)",
    "size_bytes": "size (KiB)",
}
SCALE = {"accuracy": 1.0, "latency_ms": 1.0, "size_bytes": 1 / 1024}  # size shown in KiB
RATIO_WORD = {"latency_ms": "faster", "size_bytes": "smaller"}


def accuracy(value: float) -> str:
    """An accuracy as a fraction with 4 decimals: ``0.9722``."""
    return f"{value:.4f}"


def ms(value: float) -> str:
    """A latency in milliseconds: ``1.234 ms``."""
    return f"{value:.3f} ms"


def kib(size_bytes: float) -> str:
    """A size in KiB: ``123.4 KiB``."""
    return f"{size_bytes / 1024:.1f} KiB"


def metric(name: str, value: float) -> str:
    """``value`` of the objective ``name`` in its unit."""
    if name == "accuracy":
        return accuracy(value)
    if name == "latency_ms":
        return ms(value)
    return kib(value)


def pts(value: float, reference: float) -> str:
    """An accuracy change in points against ``reference``: ``+0.42``."""
    return f"{100 * (value - reference):+.2f}"


def times(reference: float, value: float) -> str:
    """How many times ``value`` is below ``reference``: ``3.1x``."""
    return f"{reference / value:.1f}x"


def versus(name: str, value: float, baseline: Mapping[str, Any], word: str | None = None) -> str:
    """The change of ``value`` against the teacher, e.g. ``+0.42 pts`` or ``3.1x faster``.

    ``word`` replaces "faster"/"smaller"; "" when the baseline lacks the metric.
    """
    ref = baseline.get(name)
    if not ref or not value:
        return ""
    if name == "accuracy":
        return f"{pts(value, ref)} pts"
    word = RATIO_WORD[name] if word is None else word
    return f"{times(ref, value)} {word}".rstrip()


def optional(value: Any, spec: str = ".4f") -> str:
    """``value`` formatted with ``spec``, or "" for None."""
    return "" if value is None else format(value, spec)


def clock(seconds: float | None) -> str:
    """A duration as ``H:MM:SS``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def summary(m: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    """One line: accuracy (change), test accuracy, latency and size with ratios."""
    parts = [f"accuracy {accuracy(m['accuracy'])} ({pts(m['accuracy'], base['accuracy'])} pts)"]
    if m.get("test_accuracy") is not None:
        parts.append(f"test {accuracy(m['test_accuracy'])}")
    parts.append(f"latency {ms(m['latency_ms'])} "
                 f"({times(base['latency_ms'], m['latency_ms'])} faster)")
    parts.append(f"size {kib(m['size_bytes'])} ({times(base['size_bytes'], m['size_bytes'])} "
                 "smaller)")
    return ", ".join(parts)
