"""How numbers are written everywhere a person reads them: terminal, logs, HTML, plots.

One function per kind of number, so the CLI tables, ``status``, the progress panel and
the report print a metric the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from objectives import z_score

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


def pts_ci(value: float, reference: float, se: float | None, confidence: float | None) -> str:
    """An accuracy change in points with its paired margin at the study's
    ``confidence``: ``-0.60 ± 1.15`` — the margin is ``z(confidence) · se``
    (``objectives.z_score``), so the lower end, ``-1.75`` here, is exactly the one-sided
    bound the accuracy constraint checks (the two ends together: a two-sided
    ``2·confidence − 1`` interval). ``pts`` alone without a standard error or a
    confidence."""
    if se is None or confidence is None:
        return pts(value, reference)
    return f"{pts(value, reference)} ± {100 * z_score(confidence) * float(se):.2f}"


def delta_ci(delta: float | None, se: float | None, confidence: float | None) -> str:
    """A recorded accuracy difference with its margin, in points (``pts_ci``; "" if none)."""
    if delta is None:
        return ""
    return pts_ci(float(delta), 0.0, se, confidence)


def ci_label(confidence: float | None) -> str:
    """What a ``pts_ci`` column holds: ``"lower end: 90 % bound"`` ("" without a
    confidence)."""
    return "" if confidence is None else f"lower end: {100 * confidence:g} % bound"


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


def summary(
    m: Mapping[str, Any], base: Mapping[str, Any], confidence: float | None = None
) -> str:
    """One line: accuracy (change, with its margin at ``confidence``: ``pts_ci``), test
    accuracy, latency and size with ratios."""
    change = pts_ci(m["accuracy"], base["accuracy"], m.get("accuracy_delta_se"), confidence)
    parts = [f"accuracy {accuracy(m['accuracy'])} ({change} pts)"]
    if m.get("test_accuracy") is not None:
        parts.append(f"test {accuracy(m['test_accuracy'])}")
    parts.append(f"latency {ms(m['latency_ms'])} "
                 f"({times(base['latency_ms'], m['latency_ms'])} faster)")
    parts.append(f"size {kib(m['size_bytes'])} ({times(base['size_bytes'], m['size_bytes'])} "
                 "smaller)")
    return ", ".join(parts)


_PRUNING = (("prune_ratio", "ch"), ("attn_prune_ratio", "heads"), ("ffn_prune_ratio", "ffn"),
            ("depth_prune_ratio", "depth"))


def pruning(params: Mapping[str, Any]) -> str:
    """The pruning settings of a trial, compactly: ``"ffn .50 depth .33"`` ("" for none)."""
    parts = [f"{short} {float(params[name]):.2f}".replace("0.", ".", 1)
             for name, short in _PRUNING if float(params.get(name) or 0.0) > 0.0]
    return " ".join(parts)


def precision(
    params: Mapping[str, Any],
    layer_bits: Mapping[str, int] | None = None,
    effective_bits: float | None = None,
) -> str:
    """A trial's weight precision: ``"8"`` (uniform), or for a per-layer allocation its
    effective bits and layer counts, ``"6.2: 1×int4 1×int8 1×fp32"``, on a bf16 base
    (``quant_bits`` 16) followed by ``" on bf16"``."""
    if layer_bits is None:
        return str(params.get("quant_bits", 32))
    label = {32: "fp32", 16: "bf16", 8: "int8", 4: "int4"}
    counts: dict[int, int] = {}
    for bits in layer_bits.values():
        counts[int(bits)] = counts.get(int(bits), 0) + 1
    summary = " ".join(f"{n}×{label.get(b, b)}" for b, n in sorted(counts.items()))
    head = "" if effective_bits is None else f"{float(effective_bits):.1f}: "
    base = " on bf16" if int(params.get("quant_bits", 32)) == 16 else ""
    return head + summary + base
