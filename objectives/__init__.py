"""What one trial computes: tasks, compression operators, and measurement.

The package is laid out by job:

* the core (this package's private modules): ``CompressionConfig``, ``Task``, the trial
  pipeline (``compress``, ``evaluate``), early stopping, the model file
  (``save_weights``) and the Hugging Face export;
* ``objectives.operators``: what a trial does to the teacher (prune, distil, quantize);
* ``objectives.measure``: how the result is measured (metric, latency, measurement lock);
* ``objectives.tasks``: built-in and Hugging Face tasks. The core never imports it.

Every public name is importable from ``objectives`` itself.

Example:
    >>> from objectives import CompressionConfig, evaluate
    >>> from objectives.tasks import digits
    >>> result = evaluate(digits(), CompressionConfig(prune_ratio=0.5, quant_bits=8))
    >>> result.size_bytes < 700_000
    True
"""

from __future__ import annotations

from objectives._config import CompressionConfig
from objectives._coverage import Coverage, quantization_coverage
from objectives._early_stop import EarlyStopping, FinishedTrial
from objectives._errors import TaskError, TrialFailed
from objectives._preflight import (
    MIN_PRUNE_EFFECT,
    MIN_QUANT_COVERAGE,
    check_setting,
    checked_parameters,
)
from objectives._pretrained import load_pretrained_compressed, save_pretrained_compressed
from objectives._probe import RETIME_MIN_SECONDS, precision_latencies, retime
from objectives._serialize import count_parameters, load_weights, save_weights
from objectives._task import IGNORE_INDEX, Split, Task, accuracy, forward
from objectives._trial import (
    MODEL_FILE,
    TrialResult,
    compress,
    evaluate,
    evaluate_teacher,
    load_compressed,
    precisions,
    pruned_copy,
    skeleton,
    task_latency,
)
from objectives.measure import (
    DEFAULT_LOCK_PATH,
    INFERENCE_FLAGS,
    LatencyStats,
    MeasurementLock,
    activate_measurement_lock,
    cpu_flags,
    describe_hardware,
    device_synchronizer,
    evaluate_metric,
    evaluate_perplexity,
    lock_path,
    lower_bound,
    measure_decode_latencies,
    measure_decode_latency,
    measure_latencies,
    measure_latency,
    rows_needed,
    z_score,
)
from objectives.operators import (
    BFloat16Module,
    QuantizedEmbedding,
    RemappedEmbedding,
    TopKLogits,
    distillation_loss,
    dynamic_int8_modules,
    dynamic_int8_rnn_modules,
    finetune,
    forget_teacher_logits,
    is_int4_weight,
    predict_logits,
    prune_structured,
    prune_transformer,
    prune_vocabulary,
    quantize,
    quantize_embeddings,
    static_int8_modules,
    teacher_logits_file,
    teacher_train_logits,
)
from objectives.operators._allocation import (
    LAYER_BITS,
    Allocation,
    LayerProfile,
    allocate,
    fastest_allocation,
    measure_sensitivity,
    uniform_budget,
)
from objectives.operators._profile import task_profile

__all__ = [
    "IGNORE_INDEX",
    "INFERENCE_FLAGS",
    "cpu_flags",
    "describe_hardware",
    "MIN_PRUNE_EFFECT",
    "MIN_QUANT_COVERAGE",
    "Coverage",
    "check_setting",
    "checked_parameters",
    "quantization_coverage",
    "DEFAULT_LOCK_PATH",
    "MODEL_FILE",
    "BFloat16Module",
    "CompressionConfig",
    "EarlyStopping",
    "FinishedTrial",
    "LatencyStats",
    "MeasurementLock",
    "QuantizedEmbedding",
    "RemappedEmbedding",
    "TopKLogits",
    "Split",
    "Task",
    "TaskError",
    "TrialFailed",
    "TrialResult",
    "accuracy",
    "activate_measurement_lock",
    "device_synchronizer",
    "lock_path",
    "compress",
    "count_parameters",
    "distillation_loss",
    "dynamic_int8_modules",
    "dynamic_int8_rnn_modules",
    "evaluate",
    "evaluate_metric",
    "evaluate_perplexity",
    "evaluate_teacher",
    "finetune",
    "forget_teacher_logits",
    "forward",
    "is_int4_weight",
    "load_compressed",
    "load_pretrained_compressed",
    "load_weights",
    "measure_decode_latencies",
    "measure_decode_latency",
    "measure_latencies",
    "measure_latency",
    "lower_bound",
    "rows_needed",
    "z_score",
    "precision_latencies",
    "RETIME_MIN_SECONDS",
    "retime",
    "LAYER_BITS",
    "Allocation",
    "LayerProfile",
    "allocate",
    "fastest_allocation",
    "measure_sensitivity",
    "task_profile",
    "uniform_budget",
    "precisions",
    "predict_logits",
    "prune_structured",
    "prune_transformer",
    "prune_vocabulary",
    "pruned_copy",
    "quantize",
    "quantize_embeddings",
    "static_int8_modules",
    "save_pretrained_compressed",
    "save_weights",
    "skeleton",
    "task_latency",
    "teacher_logits_file",
    "teacher_train_logits",
]
