"""Loading a Hugging Face tokenizer from a local directory (text tasks and model export)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from objectives._errors import TaskError
from objectives._imports import import_transformers


def load_tokenizer(path: str | Path) -> Any:
    """The ``AutoTokenizer`` saved in ``path``, loaded offline.

    Raises:
        TaskError: ``path`` holds no tokenizer transformers can load.
    """
    transformers = import_transformers()
    try:
        return transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise TaskError(f"cannot load a tokenizer from {str(path)!r}: {exc}") from None
