"""Where slimsearch caches on disk (trained teachers, teacher logits) and how entries are keyed."""

from __future__ import annotations

import hashlib
import inspect
import os
from pathlib import Path
from types import ModuleType

import torch


def cache_dir() -> Path:
    """``$SLIMSEARCH_CACHE_DIR``, else ``~/.cache/slimsearch``."""
    root = os.environ.get("SLIMSEARCH_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "slimsearch"


def teacher_key(code: ModuleType, data: list[torch.Tensor], **settings: object) -> str:
    """A key that changes when the module's source, the data or any setting changes.

    Tasks name their cached teachers by it:
    ``cache_dir() / "teachers" / f"{name}-{key}.safetensors"``.
    """
    h = hashlib.sha256()
    h.update(inspect.getsource(code).encode())
    h.update(torch.__version__.split("+")[0].encode())
    for t in data:
        t = t.contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update(repr(sorted(settings.items())).encode())
    return h.hexdigest()[:20]
