"""One small, really trained model per family users bring, each wrapped as a ``Task``.

Residual CNN with BatchNorm and a projection shortcut, depthwise-separable CNN, LSTM and
GRU sequence classifiers, a GPT-2 classifier (Hugging Face ``Conv1D`` projections) and a
Llama classifier with grouped-query attention and a gated MLP — both built from configs.
Each trains in seconds on learnable synthetic data, so tests can check that compression
really applies (file size, coverage, parameter counts) and that accuracy survives.
Widths are chosen so weights dominate the file (as in real models).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from objectives import Split, Task

CLASSES = 4


# ------------------------------------------------------------------------------ CNNs
class ProjBlock(nn.Module):
    """Residual block whose shortcut is a strided 1x1 convolution + BatchNorm."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.shortcut(x) + self.bn2(self.conv2(y)))


class ResNetProj(nn.Module):
    """Stem, an identity block, a projection block, pooling and a Linear head."""

    def __init__(self, classes: int = CLASSES, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.conv_a = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn_a = nn.BatchNorm2d(width)
        self.down = ProjBlock(width, 2 * width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.bn_a(self.conv_a(x)))
        return self.head(self.pool(self.down(x)).flatten(1))


class DepthwiseCNN(nn.Module):
    """MobileNet-style: depthwise 3x3 (groups = channels) then pointwise 1x1, with BN."""

    def __init__(self, classes: int = CLASSES, width: int = 64) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        layers: list[nn.Module] = []
        for _ in range(2):
            layers += [
                nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False),
                nn.BatchNorm2d(width), nn.ReLU(),
                nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            ]
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.body(self.stem(x))).flatten(1))


def images(n: int, seed: int, size: int = 16) -> Split:
    """Blobs whose quadrant encodes the class (1 channel, ``size`` x ``size``)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    x = torch.randn(n, 1, size, size, generator=g) * 0.3
    h = size // 2
    for i, c in enumerate(labels.tolist()):
        r, col = divmod(c, 2)
        x[i, 0, r * h : r * h + h, col * h : col * h + h] += 1.0
    return Split(x, labels)


# ------------------------------------------------------------------------------ RNNs
class RNNClassifier(nn.Module):
    """A 2-layer LSTM or GRU over (batch, time, features); the last step's state → head."""

    def __init__(self, cell: str, features: int = 8, hidden: int = 96) -> None:
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.rnn = rnn(features, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def sequences(n: int, seed: int, steps: int = 12, features: int = 8) -> Split:
    """Noise sequences; the class is which feature pair carries a bump mid-sequence."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    x = torch.randn(n, steps, features, generator=g) * 0.5
    for i, c in enumerate(labels.tolist()):
        x[i, 3:9, 2 * c : 2 * c + 2] += 1.0
    return Split(x, labels)


# ---------------------------------------------------------------------- transformers
VOCAB = 64
SEQ = 16


def tokens(n: int, seed: int) -> Split:
    """Random token ids (4..63); class ``c`` plants token ``c`` (0..3) somewhere."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    ids = torch.randint(4, VOCAB, (n, SEQ), generator=g)
    pos = torch.randint(0, SEQ, (n,), generator=g)
    ids[torch.arange(n), pos] = labels
    return Split({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, labels)


def gpt2_classifier() -> nn.Module:
    """A 2-layer GPT-2 (hidden 64, 4 heads, MLP 256) sequence classifier from a config."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB, n_positions=SEQ, n_embd=64, n_layer=2, n_head=4,
        num_labels=CLASSES, pad_token_id=VOCAB - 1, bos_token_id=VOCAB - 2,
        eos_token_id=VOCAB - 2, attn_pdrop=0.0, embd_pdrop=0.0,
        resid_pdrop=0.0,
    )
    return GPT2ForSequenceClassification(config)


def llama_classifier() -> nn.Module:
    """A 2-layer Llama (hidden 64, 4 query heads over 2 KV heads, gated MLP 192)."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=SEQ,
        num_labels=CLASSES, pad_token_id=VOCAB - 1,
    )
    return LlamaForSequenceClassification(config)


# ------------------------------------------------------------------------------ tasks
def _train(model: nn.Module, train: Split, epochs: int, lr: float) -> nn.Module:
    from objectives import forward
    from objectives._task import take

    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    n = len(train)
    for _ in range(epochs):
        order = torch.randperm(n)
        for start in range(0, n, 32):
            idx = order[start : start + 32]
            loss = nn.functional.cross_entropy(
                forward(model, take(train.inputs, idx)), train.labels[idx]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _task(name: str, model: nn.Module, data: Callable[[int, int], Split], *,
          epochs: int, lr: float, finetune_epochs: int = 2) -> Task:
    train, val, test = data(384, 1), data(128, 2), data(128, 3)
    teacher = _train(model, train, epochs, lr)
    return Task(
        name=name, teacher=teacher, train=train, val=val, test=test, num_classes=CLASSES,
        latency_batch_size=16, finetune_epochs=finetune_epochs,
    )


def resnet_task() -> Task:
    return _task("resnet-proj", ResNetProj(), images, epochs=6, lr=3e-3)


def depthwise_task() -> Task:
    return _task("depthwise-cnn", DepthwiseCNN(), images, epochs=6, lr=3e-3)


def lstm_task() -> Task:
    return _task("lstm", RNNClassifier("lstm"), sequences, epochs=8, lr=3e-3)


def gru_task() -> Task:
    return _task("gru", RNNClassifier("gru"), sequences, epochs=8, lr=3e-3)


def gpt2_task() -> Task:
    return _task("gpt2-cls", gpt2_classifier(), tokens, epochs=10, lr=1e-3)


def llama_task() -> Task:
    return _task("llama-cls", llama_classifier(), tokens, epochs=10, lr=1e-3)


FAMILIES: dict[str, Callable[[], Task]] = {
    "resnet": resnet_task,
    "depthwise": depthwise_task,
    "lstm": lstm_task,
    "gru": gru_task,
    "gpt2": gpt2_task,
    "llama": llama_task,
}
