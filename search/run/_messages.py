"""The typed messages that cross the Ray boundary between the driver and its workers.

Both sides import these classes: a worker builds a ``TrialReport`` and hands Ray Tune its
``to_metrics()`` mapping (Tune's ``report`` takes a flat dict); the driver's searcher reads
it back with ``TrialReport.from_metrics`` — field by field, by the same names — so a
field added on one side cannot be dropped silently on the other. ``EarlyStoppingSpec``
travels the other way, inside the trainable's parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from search.study import (
    METRICS,
    MISSING_METRIC,
    NON_FINITE_METRIC,
    WORKER_ERROR,
)

# Marks a Tune result as ours: a result without it never came from ``run_trial``.
REPORT_MARK = "slimsearch_report"
REPORT_VERSION = 1
# ``TrialResult.timings`` keys a report carries (seconds per phase and in total).
TIMINGS = ("prune_s", "finetune_s", "quantize_s", "measure_s", "compute_s")


@dataclass(frozen=True)
class TrialReport:
    """What a worker measured for one trial (or the baseline), or why it failed.

    Attributes:
        accuracy: Validation metric (ranked on); NaN when the trial failed.
        latency_ms: Median latency of the final artifact (the objective); NaN when
            failed. In a trial it is read relative to the teacher timed beside it, in
            the baseline's terms: ``latency_raw_ms · baseline latency /
            reference_latency_ms`` (``report_of``), so every trial is compared with the
            baseline under the conditions of its own measurement.
        latency_raw_ms: The artifact's own median, as timed in the trial.
        reference_latency_ms: The teacher's median, timed alternately with the artifact.
        size_bytes: Bytes of the weights file written; NaN when failed.
        test_accuracy: Test metric (reported only), if measured.
        num_parameters: Weight elements of the compressed model.
        params_before: Weight elements of the teacher (before pruning).
        quant_coverage: Share of the weight elements stored at the requested precision.
        uncovered_layers: Layer types left above the requested precision, comma-joined.
        hardware: Where latency was measured (``objectives.describe_hardware``).
        perplexity: Language models: validation perplexity (reported, not ranked on).
        layers_removed: Decoder layers depth pruning removed (None: not depth-pruned).
        heads_kept: Query heads per layer after decoder head pruning (None: not pruned).
        accuracy_delta, accuracy_delta_se: Validation accuracy minus the teacher's on the
            same rows, and its standard error (``objectives.TrialResult``).
        confirm_accuracy, confirm_delta, confirm_delta_se: The same on the task's
            confirmation rows (never ranked on), when it has them.
        prefill_ms, decode_ms_per_token: Language models: both latency figures
            (``latency_ms`` is the one the task's ``latency_mode`` chose).
        layer_bits: With ``bit_budget``: JSON of the precision each Linear layer got.
        effective_bits: With ``bit_budget``: stored bits per weight of those layers.
        layer_time_share: With ``bit_budget``: those layers' estimated time (the per-layer
            timing table) as a fraction of theirs at fp32.
        latency_cv: Coefficient of variation of the latency samples.
        latency_p90_ms: 90th percentile latency.
        epoch_accuracies: Validation metric after each fine-tune epoch (early stopping).
        stopped: Why early stopping ended the trial; its objectives are then partial.
        seed: The training seed.
        device: Where the trial ran (``cpu``/``cuda``).
        node: The Ray node id of the worker ("" outside Ray).
        prune_s, finetune_s, quantize_s, measure_s, compute_s: Seconds per phase and
            for the whole compression + measurement.
        trial_fn_s: Seconds the worker function ran in all.
        error: One line saying why the trial failed; None when it did not.
        error_type: The exception's type name.
        traceback: The tail of the worker's traceback of a failed trial.
    """

    accuracy: float
    latency_ms: float
    size_bytes: float
    test_accuracy: float | None = None
    num_parameters: int | None = None
    params_before: int | None = None
    quant_coverage: float | None = None
    uncovered_layers: str | None = None
    hardware: str | None = None
    perplexity: float | None = None
    layers_removed: int | None = None
    heads_kept: int | None = None
    accuracy_delta: float | None = None
    accuracy_delta_se: float | None = None
    confirm_accuracy: float | None = None
    confirm_delta: float | None = None
    confirm_delta_se: float | None = None
    prefill_ms: float | None = None
    decode_ms_per_token: float | None = None
    layer_bits: str | None = None
    effective_bits: float | None = None
    layer_time_share: float | None = None
    latency_cv: float | None = None
    latency_p90_ms: float | None = None
    latency_raw_ms: float | None = None
    reference_latency_ms: float | None = None
    epoch_accuracies: tuple[float, ...] = field(default_factory=tuple)
    stopped: str | None = None
    seed: int | None = None
    device: str | None = None
    node: str | None = None
    prune_s: float | None = None
    finetune_s: float | None = None
    quantize_s: float | None = None
    measure_s: float | None = None
    compute_s: float | None = None
    trial_fn_s: float | None = None
    error: str | None = None
    error_type: str | None = None
    traceback: str | None = None

    @classmethod
    def failed(cls, error: str, error_type: str, traceback: str | None = None) -> TrialReport:
        """The report of a trial that raised ``error_type: error``."""
        nan = float("nan")
        return cls(nan, nan, nan, error=error, error_type=error_type, traceback=traceback)

    def measurements(self) -> dict[str, Any]:
        """Every set field as a flat, JSON-ready mapping (unset fields left out)."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if value is None or (key == "epoch_accuracies" and not value):
                continue
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def to_metrics(self) -> dict[str, Any]:
        """The flat mapping handed to ``ray.tune.report``: ``measurements()`` and a mark."""
        return {REPORT_MARK: REPORT_VERSION, **self.measurements()}

    @classmethod
    def from_metrics(cls, result: Mapping[str, Any] | None) -> TrialReport:
        """Read back what ``to_metrics`` produced (Tune adds keys of its own: ignored).

        A result that did not come from ``to_metrics`` — the worker died, or Tune reports
        a trial that never reported — becomes a failed report saying so.
        """
        if not result or result.get(REPORT_MARK) != REPORT_VERSION:
            return cls.failed(
                "the trial's worker raised or died without reporting (see Ray's logs)",
                WORKER_ERROR,
            )
        missing = [m for m in METRICS if m not in result]
        if missing:
            return cls.failed(f"trial reported no {', '.join(missing)}", MISSING_METRIC)
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in result:
                value = result[f.name]
                values[f.name] = tuple(value) if f.name == "epoch_accuracies" else value
        return cls(**values)

    def failure(self) -> tuple[str, str] | None:
        """``(error_type, message)`` when this report is not a usable result, else None.

        The one place a result is judged: an error the worker reported, or — for a
        trial that ran to the end — an objective that is not a finite number.
        """
        if self.error is not None:
            return self.error_type or "Exception", self.error
        if self.stopped is not None:
            return None
        bad = [m for m in METRICS if not math.isfinite(float(getattr(self, m)))]
        if bad:
            return NON_FINITE_METRIC, f"trial reported non-finite {', '.join(bad)}"
        return None

    def objectives(self) -> list[float]:
        """The objective values in ``METRICS`` order."""
        return [float(getattr(self, m)) for m in METRICS]

    def attributes(self) -> dict[str, Any]:
        """The measurements stored as trial user attributes besides the objectives."""
        skip = {*METRICS, "error", "error_type", "traceback", "stopped"}
        return {k: v for k, v in self.measurements().items() if k not in skip}


@dataclass(frozen=True)
class EarlyStoppingSpec:
    """What a worker needs to stop hopeless trials early (``objectives.EarlyStopping``).

    Attributes:
        baseline_accuracy: The teacher's validation metric.
        max_accuracy_drop: The study's constraint, or None.
        storage_url: The study's storage (absolute SQLite path: workers run elsewhere),
            read for the finished trials a running one is compared with.
        study_name: The study.
    """

    baseline_accuracy: float
    max_accuracy_drop: float | None
    storage_url: str
    study_name: str
