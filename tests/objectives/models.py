"""Models and tasks the tests use besides the embedded digits task."""

from __future__ import annotations

import torch
from torch import nn

from objectives import Split, Task


class ResBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class TinyResNet(nn.Module):
    """A residual CNN with BatchNorm ending in a Linear head."""

    def __init__(self, classes: int = 4, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.blocks = nn.Sequential(ResBlock(width), ResBlock(width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.blocks(self.stem(x))).flatten(1))


class ConvOnly(nn.Module):
    """Convolutions only, no Linear layer (int8 covers it through static conv quantization)."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, classes, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).flatten(1)


def synthetic_images(n: int, classes: int, seed: int) -> Split:
    """Blobs whose quadrant encodes the class: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    x = torch.randn(n, 1, 8, 8, generator=g) * 0.3
    for i, c in enumerate(labels.tolist()):
        r, col = divmod(c, 2)
        x[i, 0, r * 4 : r * 4 + 4, col * 4 : col * 4 + 4] += 1.0
    return Split(x, labels)


def image_task(model: nn.Module, *, name: str = "tiny-resnet", epochs: int = 30) -> Task:
    """Train ``model`` briefly on synthetic images and wrap it as a Task."""
    torch.manual_seed(0)
    train, val, test = (synthetic_images(n, 4, s) for n, s in ((256, 1), (96, 2), (96, 3)))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for start in range(0, len(train), 64):
            loss = nn.functional.cross_entropy(
                model(train.inputs[start : start + 64]), train.labels[start : start + 64]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return Task(
        name=name,
        teacher=model,
        train=train,
        val=val,
        test=test,
        num_classes=4,
        latency_batch_size=16,
        finetune_epochs=2,
    )


class FunctionalOnly(nn.Module):
    """Weights used through ``torch.nn.functional`` only: no layer a quantizer or a
    structured pruner can recognise (one matrix, one bias)."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, 64) * 0.05)
        self.bias = nn.Parameter(torch.zeros(classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x.flatten(1), self.weight, self.bias)
