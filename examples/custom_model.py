"""Your own PyTorch model and your own data: wrap them in a ``Task`` and search.

    python examples/custom_model.py --data my_images.npz   # x: (N, C, H, W) float, y: (N,) int
    python examples/custom_model.py                         # stand-in data (see load_data)

A ``Task`` needs a trained teacher and three splits. Trials fine-tune on ``train`` only,
are ranked on ``val`` and ``test`` is only reported. The task is shipped to Ray workers,
so the model class must be importable or defined in the script you run (as here).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

from objectives import Split, Task
from search import Search
from spaces import SearchSpace


class SmallCNN(nn.Module):
    """Conv-BN-ReLU ×2 and a linear head: channels are what structured pruning removes."""

    def __init__(self, channels: int = 1, classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Linear(8 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def load_data(path: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Images ``x`` (N, C, H, W) and integer labels ``y`` (N,).

    Replace this with your own loader. Without ``--data`` it uses scikit-learn's 8×8 digit
    images as a stand-in, so the example runs offline.
    """
    if path:
        with np.load(path) as data:
            return data["x"].astype(np.float32), data["y"].astype(np.int64)
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images[:, None] / 16.0).astype(np.float32), digits.target.astype(np.int64)


def splits(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[Split, Split, Split]:
    """A shuffled 60/20/20 train/val/test split."""
    order = np.random.default_rng(seed).permutation(len(y))
    a, b = int(0.6 * len(y)), int(0.8 * len(y))
    parts = order[:a], order[a:b], order[b:]
    return tuple(Split(torch.from_numpy(x[i]), torch.from_numpy(y[i])) for i in parts)


def train_teacher(model: nn.Module, train: Split, epochs: int, seed: int = 0) -> nn.Module:
    """Ordinary supervised training; any trained model will do."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(train))
        for start in range(0, len(train), 64):
            idx = order[start:start + 64]
            loss = nn.functional.cross_entropy(model(train.inputs[idx]), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help=".npz with arrays x and y")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=4, help="distillation epochs per trial")
    parser.add_argument("--storage", default="sqlite:///custom.db")
    args = parser.parse_args(argv)

    x, y = load_data(args.data)
    train, val, test = splits(x, y)
    classes = int(y.max()) + 1
    teacher = train_teacher(SmallCNN(x.shape[1], classes), train, args.teacher_epochs)
    task = Task(
        name="my-cnn", teacher=teacher, train=train, val=val, test=test, num_classes=classes,
        latency_batch_size=64, finetune_epochs=args.epochs,
    )
    # Up to 70% of the channels, and fp32, bf16 or int8: int8 covers the convolutions
    # (static, activation ranges calibrated on training rows) and the Linear head. Before
    # the first trial every value is checked against the teacher; one that would do
    # nothing to this model is refused with a one-line error.
    space = (SearchSpace.default()
             .narrow("prune_ratio", low=0.0, high=0.7)
             .narrow("quant_bits", choices=[32, 16, 8]))
    front = Search(task, space, storage=args.storage, study_name="my-cnn",
                   n_trials=args.trials, max_concurrent_trials=args.workers,
                   max_accuracy_drop=0.02).run()
    base = front.baseline
    print(f"teacher: val accuracy {base['accuracy']:.4f}, {base['size_bytes'] / 1024:.1f} KiB")
    for c in front:
        print(f"trial {c.trial:3d}: val accuracy {c.accuracy:.4f}, {c.latency_ms:.3f} ms, "
              f"{c.size_bytes / 1024:.1f} KiB, prune {c.params['prune_ratio']:.2f}, "
              f"{c.params['quant_bits']} bits on {c.quant_coverage:.0%} of the weights")


if __name__ == "__main__":
    main()
