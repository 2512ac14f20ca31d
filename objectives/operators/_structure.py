"""The structural step of a trial: which parts of the teacher a student loses.

``restructure`` first rewrites Hugging Face ``Conv1D`` projections (GPT-2) as the
``nn.Linear`` layers they are, so every later operator sees standard layers; it then
dispatches on the model and the config: channel / neuron / hidden-unit pruning
for MLPs, CNNs and RNNs (``prune_ratio``), head pruning for BERT-style encoders
(``attn_prune_ratio``) and FFN pruning for transformer encoders and decoders
(``ffn_prune_ratio``; GPT-2, Llama-style gated MLPs), whole decoder layers
(``depth_prune_ratio``, first), and vocabulary pruning for text tasks
(``prune_vocab``), then int8 embedding tables (``embed_bits``). Embeddings are quantized
*before* the distillation fine-tune: they stay frozen at int8 while the rest of the
network adapts to them (quantization-aware for the tables, at no extra cost). Every
step is a deterministic function of the teacher's weights, the task's data and the
config, so ``skeleton``/``load_compressed`` can re-apply it.
"""

from __future__ import annotations

from torch import nn

from objectives._config import CompressionConfig
from objectives._errors import TaskError
from objectives._task import Task
from objectives.operators._conv1d import linearize_conv1d
from objectives.operators._decoder_heads import (
    gqa_attention_modules,
    prune_decoder_heads,
    refuse_decoder_heads,
)
from objectives.operators._depth_pruning import decoder_blocks, prune_depth, refuse_depth
from objectives.operators._embedding_quant import quantize_embeddings
from objectives.operators._linear_quant import INT4_GROUP_SIZE
from objectives.operators._pruning import prune_structured
from objectives.operators._rnn_pruning import plan_recurrent
from objectives.operators._transformer_pruning import (
    is_hf_transformer,
    is_transformer,
    prune_transformer,
)
from objectives.operators._vocab import prune_vocabulary, used_token_ids


def refuse_unprunable(model: nn.Module, config: CompressionConfig) -> None:
    """Raise before any work if a pruning setting cannot apply to ``model``.

    Cheap checks, no weight changes: ``prune_ratio`` on a Hugging Face transformer (it
    would cut the hidden size) or on recurrent layers it cannot prune (bidirectional, or
    read by layers it cannot narrow; found by a ``torch.fx`` trace),
    ``depth_prune_ratio`` on a model without decoder layers, and ``attn_prune_ratio`` on a
    transformer with neither BERT-style nor Llama-family attention (GPT-2 is refused by
    name: its config cannot express a pruned head count).

    Raises:
        TaskError: one line naming the setting, the model or layer, and the fix.
    """
    hf = is_hf_transformer(model)
    if config.prune_ratio > 0.0 and hf:
        raise TaskError(
            f"prune_ratio={config.prune_ratio:g} prunes MLP/CNN channels and would cut the "
            "hidden size of a transformer; fix prune_ratio at 0 and search attn_prune_ratio "
            "and ffn_prune_ratio instead ("
            + ("and depth_prune_ratio: SearchSpace.preset('decoder')" if decoder_blocks(model)
               else "SearchSpace.preset('transformer')")
            + ")"
        )
    plan_recurrent(model, config.prune_ratio)  # refuses RNNs it cannot prune
    refuse_depth(model, config.depth_prune_ratio)
    refuse_decoder_heads(model, config.attn_prune_ratio)
    if (config.attn_prune_ratio > 0.0 and hf and not is_transformer(model)
            and not gqa_attention_modules(model)):
        raise TaskError(
            f"attn_prune_ratio={config.attn_prune_ratio:g} cannot prune the attention heads "
            f"of {type(model).__name__}: head pruning supports BERT-style encoders "
            "(query/key/value) and Llama-family decoders (q/k/v/o_proj); fix attn_prune_ratio at 0"
        )


def applied_pruning(
    teacher: nn.Module, student: nn.Module, config: CompressionConfig
) -> dict[str, int]:
    """What the config's decoder pruning really did to ``student`` (a pruned copy of
    ``teacher``), for the trial to record: ``layers_removed`` (decoder layers gone, with
    ``depth_prune_ratio > 0``) and ``heads_kept`` (query heads left per layer, with
    ``attn_prune_ratio > 0`` on Llama-family attention). Empty when neither applies."""
    out: dict[str, int] = {}
    before, after = decoder_blocks(teacher), decoder_blocks(student)
    if config.depth_prune_ratio > 0.0 and before is not None and after is not None:
        out["layers_removed"] = len(before[1]) - len(after[1])
    modules = gqa_attention_modules(student)
    if config.attn_prune_ratio > 0.0 and modules:
        out["heads_kept"] = modules[0].q_proj.out_features // int(modules[0].head_dim)
    return out


def restructure(student: nn.Module, task: Task, config: CompressionConfig) -> nn.Module:
    """Apply the config's structural compression to ``student`` (a copy of the teacher).

    With ``quant_bits == 4`` or a ``bit_budget`` (whose allocation may store layers
    int4), pruned widths are rounded down to multiples of ``INT4_GROUP_SIZE`` (32) so the
    int4 group quantization still applies to them at the teacher's overhead.

    Raises:
        TaskError: a setting does not apply to this model or task (the message names it
            and the setting to fix instead); pruning refusals are raised before any work.
    """
    student = linearize_conv1d(student)  # GPT-2 style Conv1D → nn.Linear (exact)
    refuse_unprunable(student, config)
    # Depth first: the layers that go need no width pruning.
    prune_depth(student, task.calibration_inputs, config.depth_prune_ratio)
    decoder_heads = bool(gqa_attention_modules(student))
    if decoder_heads:  # grouped-query-aware head pruning (Llama family)
        prune_decoder_heads(student, config.attn_prune_ratio)
    round_to = INT4_GROUP_SIZE if config.quant_bits == 4 or config.bit_budget > 0 else None
    student = prune_structured(
        student,
        task.example_inputs,
        config.prune_ratio,
        ignored_layers=task.output_layers(student) if config.prune_ratio > 0.0 else (),
        round_to=round_to,
    )
    student = prune_transformer(
        student,
        task.example_inputs,
        attn_ratio=0.0 if decoder_heads else config.attn_prune_ratio,
        ffn_ratio=config.ffn_prune_ratio,
        round_to=round_to,
    )
    if config.prune_vocab:
        unk = getattr(task, "unk_token_id", None)
        if unk is None:
            raise TaskError(
                f"prune_vocab=true needs a text task that names its unknown token "
                f"(objectives.tasks.hf_text_task); task {task.name!r} does not; "
                "fix prune_vocab at false"
            )
        keep = used_token_ids(task.train.inputs) | set(getattr(task, "special_token_ids", ()))
        student = prune_vocabulary(student, keep, unk_id=int(unk))
    return quantize_embeddings(student, config.embed_bits)
