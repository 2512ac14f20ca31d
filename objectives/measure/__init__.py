"""How a trial's model is measured: the task metric, latency, and the lock that keeps
latency timing free of other trials' work.

The size objective is the byte count of the safetensors file ``objectives.save_weights``
writes. That serialization stays in the core rather than here: it is the model file
format — the teacher cache of tasks, ``load_compressed`` and the Hugging Face export read
and write it too — and it has to know the quantized layer formats of ``operators``,
which themselves use this package's lock (fine-tune steps hold it shared).
"""

from __future__ import annotations

from objectives.measure._hardware import INFERENCE_FLAGS, cpu_flags, describe_hardware
from objectives.measure._latency import (
    LatencyStats,
    measure_decode_latencies,
    measure_decode_latency,
    measure_latencies,
    measure_latency,
)
from objectives.measure._lock import (
    DEFAULT_LOCK_PATH,
    MeasurementLock,
    activate_measurement_lock,
    device_synchronizer,
    lock_path,
)
from objectives.measure._metric import evaluate_metric, evaluate_perplexity
from objectives.measure._paired import lower_bound, rows_needed, z_score

__all__ = [
    "DEFAULT_LOCK_PATH",
    "INFERENCE_FLAGS",
    "LatencyStats",
    "MeasurementLock",
    "activate_measurement_lock",
    "cpu_flags",
    "describe_hardware",
    "device_synchronizer",
    "evaluate_metric",
    "evaluate_perplexity",
    "lock_path",
    "lower_bound",
    "measure_decode_latencies",
    "measure_decode_latency",
    "measure_latencies",
    "measure_latency",
    "rows_needed",
    "z_score",
]
