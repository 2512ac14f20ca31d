"""The teacher-logit cache is keyed by device kind and precision, not by task alone."""

from __future__ import annotations

import pytest
import torch

from objectives import forget_teacher_logits, teacher_logits_file, teacher_train_logits


def test_logits_from_another_device_kind_are_kept_apart(digits_task):
    cpu = teacher_logits_file(digits_task, "cpu")
    cuda = teacher_logits_file(digits_task, "cuda")
    assert cpu != cuda and "cuda-float32" in cuda.name and "cuda" not in cpu.name
    assert teacher_logits_file(digits_task, "cuda:1") == cuda  # the kind, not the index


def test_cpu_logits_are_computed_once_and_reread(digits_task):
    forget_teacher_logits(digits_task, on_disk=True)
    first = teacher_train_logits(digits_task)
    assert teacher_logits_file(digits_task).is_file()
    forget_teacher_logits(digits_task)  # memory only: the disk copy is read back
    again = teacher_train_logits(digits_task)
    assert torch.equal(first, again)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_logits_leave_the_shared_teacher_on_the_cpu(digits_task):
    forget_teacher_logits(digits_task, on_disk=True, device="cuda")
    logits = teacher_train_logits(digits_task, "cuda")
    assert next(digits_task.teacher.parameters()).device.type == "cpu"
    assert teacher_logits_file(digits_task, "cuda").is_file()
    cpu = teacher_train_logits(digits_task, "cpu")
    assert logits.shape == cpu.shape
    assert torch.allclose(logits, cpu, atol=1e-2)
