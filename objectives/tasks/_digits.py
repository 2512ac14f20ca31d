"""The embedded default task: scikit-learn's 8×8 handwritten digits and an MLP teacher."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
from torch import nn

from objectives._cache import cache_dir, teacher_key
from objectives._errors import TaskError
from objectives._serialize import load_weights, save_weights
from objectives._task import Split, Task

logger = logging.getLogger(__name__)


class DigitsMLP(nn.Module):
    """64 → hidden → hidden/2 → 10 multilayer perceptron."""

    def __init__(self, hidden: int = 512) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden // 2),
            nn.ReLU(),
            nn.Linear(hidden // 2, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _splits(seed: int, confirm_rows: int = 0) -> tuple[Split, Split, Split, Split | None]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    idx = list(range(len(y)))
    train_idx, rest = train_test_split(idx, test_size=0.4, stratify=y, random_state=seed)
    val_idx, test_idx = train_test_split(
        rest, test_size=0.5, stratify=y[rest], random_state=seed
    )
    confirm_idx = None
    if confirm_rows:
        if not 10 <= confirm_rows <= len(train_idx) // 2:
            raise TaskError(
                f"confirm_rows={confirm_rows} is out of range; allowed: 0, or 10 to "
                f"{len(train_idx) // 2} (taken off the {len(train_idx)} training rows)"
            )
        train_idx, confirm_idx = train_test_split(
            train_idx, test_size=confirm_rows, stratify=y[train_idx], random_state=seed
        )

    def split(rows: list[int]) -> Split:
        t = torch.tensor(rows)
        return Split(x[t], y[t])

    return (split(train_idx), split(val_idx), split(test_idx),
            None if confirm_idx is None else split(confirm_idx))


def _train_teacher(model: nn.Module, train: Split, *, seed: int, epochs: int) -> None:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    n = len(train)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, 64):
            idx = order[start : start + 64]
            loss = nn.functional.cross_entropy(model(train.inputs[idx]), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()


def digits(
    *,
    seed: int = 0,
    hidden: int = 512,
    epochs: int = 60,
    finetune_epochs: int = 8,
    latency_batch_size: int = 256,
    threads: int = 1,
    cache: str | Path | None = None,
    confirm_rows: int = 0,
) -> Task:
    """scikit-learn's digits (1,797 8×8 images, 10 classes), split 60/20/20 stratified.

    The MLP teacher is trained once and cached as safetensors under
    ``cache/teachers/digits-<key>.safetensors``; the key changes with this module's
    source, the data, ``seed``, ``hidden`` and ``epochs``.

    Args:
        seed: Seeds the split and the teacher's training.
        hidden: Width of the first hidden layer.
        epochs: Teacher training epochs.
        finetune_epochs: Distillation epochs per trial.
        latency_batch_size: Rows per forward pass when timing.
        threads: Intra-op threads per trial.
        cache: Cache directory (default ``$SLIMSEARCH_CACHE_DIR`` or ``~/.cache/slimsearch``).
        confirm_rows: Rows carved (stratified) off the training split as confirmation
            rows (``Task.confirm``: never trained or ranked on); 0 for none. Validation
            and test stay as they are; the teacher trains on the rest.

    Raises:
        TaskError: ``confirm_rows`` outside 0 or [10, half the training rows].
    """
    train, val, test, confirm = _splits(seed, confirm_rows)
    torch.manual_seed(seed)
    teacher = DigitsMLP(hidden)
    key = teacher_key(
        sys.modules[__name__],
        [train.inputs, train.labels],
        seed=seed,
        hidden=hidden,
        epochs=epochs,
    )
    path = Path(cache) if cache is not None else cache_dir()
    file = path / "teachers" / f"digits-{key}.safetensors"
    if file.exists():
        load_weights(teacher, file)
    else:
        logger.info("training the digits teacher (cached at %s)", file)
        _train_teacher(teacher, train, seed=seed, epochs=epochs)
        file.parent.mkdir(parents=True, exist_ok=True)
        save_weights(teacher, file)
    return Task(
        name="digits",
        teacher=teacher.eval(),
        train=train,
        val=val,
        test=test,
        confirm=confirm,
        num_classes=10,
        latency_batch_size=latency_batch_size,
        finetune_epochs=finetune_epochs,
        threads=threads,
        spec={
            "seed": seed,
            "hidden": hidden,
            "epochs": epochs,
            "finetune_epochs": finetune_epochs,
            "latency_batch_size": latency_batch_size,
            "threads": threads,
            # only when set: the default task's spec (and its studies) stay as they were
            **({"confirm_rows": confirm_rows} if confirm_rows else {}),
        },
    )
