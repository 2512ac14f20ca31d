"""Compression operators: what a trial does to the teacher — prune, distil, quantize.

Structural operators (channel, head/FFN and vocabulary pruning, int8 embedding tables)
run before the distillation fine-tune, quantization of the weight layers (Linear,
convolutions, LSTM/GRU) after it;
``objectives.compress`` chains them in that order.
"""

from __future__ import annotations

from objectives.operators._conv1d import linearize_conv1d
from objectives.operators._distill import distillation_loss, finetune
from objectives.operators._embedding_quant import QuantizedEmbedding, quantize_embeddings
from objectives.operators._pruning import prune_structured
from objectives.operators._qtypes import (
    dynamic_int8_modules,
    dynamic_int8_rnn_modules,
    is_int4_weight,
)
from objectives.operators._quantize import BFloat16Module, quantize
from objectives.operators._static_int8 import static_int8_modules
from objectives.operators._teacher_logits import (
    TopKLogits,
    forget_teacher_logits,
    predict_logits,
    teacher_logits_file,
    teacher_train_logits,
)
from objectives.operators._transformer_pruning import prune_transformer
from objectives.operators._vocab import RemappedEmbedding, prune_vocabulary

__all__ = [
    "BFloat16Module",
    "QuantizedEmbedding",
    "RemappedEmbedding",
    "distillation_loss",
    "dynamic_int8_modules",
    "dynamic_int8_rnn_modules",
    "finetune",
    "TopKLogits",
    "forget_teacher_logits",
    "is_int4_weight",
    "linearize_conv1d",
    "predict_logits",
    "prune_structured",
    "prune_transformer",
    "prune_vocabulary",
    "quantize",
    "quantize_embeddings",
    "static_int8_modules",
    "teacher_logits_file",
    "teacher_train_logits",
]
