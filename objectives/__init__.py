"""What one trial computes: tasks, compression operators, and measurement.

Example:
    >>> from objectives import CompressionConfig, evaluate
    >>> from objectives.tasks import digits
    >>> result = evaluate(digits(), CompressionConfig(prune_ratio=0.5, quant_bits=8))
    >>> result.size_bytes < 700_000
    True
"""

from __future__ import annotations

from objectives._config import CompressionConfig
from objectives._distill import distillation_loss, finetune, predict_logits
from objectives._early_stop import EarlyStopping, FinishedTrial
from objectives._embedding_quant import QuantizedEmbedding, quantize_embeddings
from objectives._errors import TaskError, TrialFailed
from objectives._measure import LatencyStats, evaluate_metric, measure_latency
from objectives._pretrained import load_pretrained_compressed, save_pretrained_compressed
from objectives._pruning import count_parameters, prune_structured
from objectives._quantize import BFloat16Module, quantize
from objectives._quiet import DEFAULT_LOCK_PATH, MeasurementLock
from objectives._quiet import set_active as activate_measurement_lock
from objectives._serialize import load_weights, save_weights
from objectives._task import Split, Task, accuracy, forward
from objectives._transformer_pruning import prune_transformer
from objectives._trial import (
    MODEL_FILE,
    PHASES,
    TrialResult,
    compress,
    evaluate,
    evaluate_teacher,
    load_compressed,
    skeleton,
)
from objectives._vocab import RemappedEmbedding, prune_vocabulary

__all__ = [
    "DEFAULT_LOCK_PATH",
    "MODEL_FILE",
    "PHASES",
    "BFloat16Module",
    "CompressionConfig",
    "EarlyStopping",
    "FinishedTrial",
    "LatencyStats",
    "MeasurementLock",
    "QuantizedEmbedding",
    "RemappedEmbedding",
    "Split",
    "Task",
    "TaskError",
    "TrialFailed",
    "TrialResult",
    "accuracy",
    "activate_measurement_lock",
    "compress",
    "count_parameters",
    "distillation_loss",
    "evaluate",
    "evaluate_metric",
    "evaluate_teacher",
    "finetune",
    "forward",
    "load_compressed",
    "load_pretrained_compressed",
    "load_weights",
    "measure_latency",
    "predict_logits",
    "prune_structured",
    "prune_transformer",
    "prune_vocabulary",
    "quantize",
    "quantize_embeddings",
    "save_pretrained_compressed",
    "save_weights",
    "skeleton",
]
