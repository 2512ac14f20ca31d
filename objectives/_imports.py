"""Third-party libraries imported without the log lines and warnings they print on import.

What they print is about their own build, not about anything a slimsearch user can act on:

* torchao logs a WARNING (logger ``torchao``) for every optional CUDA kernel library it
  cannot load: ``Failed to load …/_C_mxfp8….so``.
* Registering its enums as pytree constants makes torch log a deprecation notice (logger
  ``torch.utils._pytree``: ``… is an Enum subclass and is now natively supported …``).
* Some transformers/torch pairs warn (``FutureWarning``/``DeprecationWarning``) that the
  way transformers registers its outputs as pytree nodes is deprecated.

transformers imports torchao itself when its modeling code is first imported — lazily,
inside the first ``from_pretrained`` — so ``import_transformers`` imports that code
up front, under the same filter. The filter drops exactly the messages above, only while
the import runs; everything else is shown as usual, and a library that is already
imported is returned as it is.
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

# logger name -> fragments of the messages dropped from it during an import
_NOISY_LOGGERS: dict[str, tuple[str, ...]] = {
    "torchao": ("Failed to load ",),
    "torch.utils._pytree": ("is an Enum subclass and is now natively supported",),
}
_PYTREE_WARNING = r".*pytree"  # re.match against the warning text, case-insensitive


class _DropMessages(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


@contextmanager
def _quiet() -> Iterator[None]:
    installed = [
        (logging.getLogger(name), _DropMessages(fragments))
        for name, fragments in _NOISY_LOGGERS.items()
    ]
    for logger, drop in installed:
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning):
                warnings.filterwarnings("ignore", message=_PYTREE_WARNING, category=category)
            yield
    finally:
        for logger, drop in installed:
            logger.removeFilter(drop)


def import_torchao() -> ModuleType:
    """``torchao.quantization``, imported quietly (see the module docstring)."""
    with _quiet():
        return importlib.import_module("torchao.quantization")


def import_transformers() -> ModuleType:
    """``transformers`` with its modeling code loaded, quietly and offline.

    ``HF_HUB_OFFLINE`` defaults to ``1`` (set before the first import, where
    transformers reads it): slimsearch loads models and tokenizers from local paths only.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with _quiet():
        transformers = importlib.import_module("transformers")
        importlib.import_module("transformers.modeling_utils")
    return transformers
