"""Built-in tasks, and the registry the CLI and recipes use to rebuild them by name."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from objectives._errors import TaskError
from objectives._task import Task
from objectives.tasks._causal_lm import (
    CausalLMTask,
    hf_causal_lm_task,
    read_lm_text,
    stdlib_docstrings,
    tiny_lm,
    tiny_lm_dir,
)
from objectives.tasks._digits import DigitsMLP, digits
from objectives.tasks._reviews import generate_reviews
from objectives.tasks._stdlib_text import STDLIB_PACKAGES, stdlib_doc_rows, stdlib_text
from objectives.tasks._text import TextTask, hf_text_task, minilm_text, read_text_data

TASKS: dict[str, Callable[..., Task]] = {
    "digits": digits,
    "minilm_text": minilm_text,
    "stdlib_text": stdlib_text,
    "tiny_lm": tiny_lm,
}


def is_task_reference(name: str) -> bool:
    """Whether ``name`` names a user's task factory (``module:function``, ``file.py:function``)."""
    return ":" in name


def load_task_factory(reference: str) -> tuple[Callable[..., Task], ModuleType]:
    """The task factory ``reference`` names, and the module it lives in.

    ``reference`` is ``package.module:function`` (imported as usual, the current directory
    first on the path) or ``path/to/file.py:function`` (loaded from that file).

    Raises:
        TaskError: the module cannot be imported or has no such callable.
    """
    module_name, _, attr = reference.rpartition(":")
    if not module_name or not attr.isidentifier():
        raise TaskError(
            f"task {reference!r} is neither a built-in task ({', '.join(sorted(TASKS))}) "
            "nor a reference of the form module:function or file.py:function"
        )
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).resolve()
            if not path.is_file():
                raise TaskError(f"task {reference!r}: no such file {str(path)!r}")
            name = f"slimsearch_user_task_{path.stem}"
            loaded = sys.modules.get(name)
            if loaded is not None and getattr(loaded, "__file__", None) == str(path):
                module = loaded  # loaded once per process: a second load would re-run it
                return _callable(module, module_name, attr, reference), module
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise TaskError(f"task {reference!r}: cannot load {str(path)!r} as Python")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except TaskError:
        raise
    except Exception as exc:  # the user's module: any import error is theirs to see
        raise TaskError(
            f"task {reference!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    return _callable(module, module_name, attr, reference), module


def _callable(
    module: ModuleType, module_name: str, attr: str, reference: str
) -> Callable[..., Task]:
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise TaskError(f"task {reference!r}: {module_name!r} has no callable {attr!r}")
    return factory


def get_task(name: str, **spec: Any) -> Task:
    """Build the task ``name`` with keyword arguments ``spec``.

    ``name`` is a built-in task (``TASKS``) or a reference to a user's factory,
    ``module:function`` or ``file.py:function`` (see ``load_task_factory``), which must
    return an ``objectives.Task``.

    Raises:
        TaskError: for an unknown name, arguments the task does not take, or a factory
            that does not return a ``Task``.
    """
    if is_task_reference(name):
        factory = load_task_factory(name)[0]
    else:
        factory = TASKS.get(name)
    if factory is None:
        raise TaskError(
            f"unknown task {name!r}; built-in tasks: {', '.join(sorted(TASKS))}, or your own "
            "as module:function"
        )
    try:
        task = factory(**spec)
    except TypeError as exc:
        raise TaskError(f"task {name!r} cannot be built with {spec!r}: {exc}") from None
    if not isinstance(task, Task):
        raise TaskError(
            f"task {name!r} returned {type(task).__name__}, not an objectives.Task"
        )
    return task


__all__ = [
    "TASKS",
    "CausalLMTask",
    "DigitsMLP",
    "TextTask",
    "digits",
    "generate_reviews",
    "get_task",
    "is_task_reference",
    "load_task_factory",
    "hf_causal_lm_task",
    "hf_text_task",
    "minilm_text",
    "read_lm_text",
    "read_text_data",
    "STDLIB_PACKAGES",
    "stdlib_doc_rows",
    "stdlib_docstrings",
    "stdlib_text",
    "tiny_lm",
    "tiny_lm_dir",
]
