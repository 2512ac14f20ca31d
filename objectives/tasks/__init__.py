"""Built-in tasks, and the registry the CLI and recipes use to rebuild them by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from objectives._errors import TaskError
from objectives._task import Task
from objectives.tasks._digits import DigitsMLP, digits
from objectives.tasks._reviews import generate_reviews
from objectives.tasks._text import TextTask, hf_text_task, minilm_text, read_text_data

TASKS: dict[str, Callable[..., Task]] = {"digits": digits, "minilm_text": minilm_text}


def get_task(name: str, **spec: Any) -> Task:
    """Build the built-in task ``name`` with keyword arguments ``spec``.

    Raises:
        TaskError: for an unknown name or arguments the task does not take.
    """
    factory = TASKS.get(name)
    if factory is None:
        raise TaskError(f"unknown task {name!r}; built-in tasks: {', '.join(sorted(TASKS))}")
    try:
        return factory(**spec)
    except TypeError as exc:
        raise TaskError(f"task {name!r} cannot be built with {spec!r}: {exc}") from None


__all__ = [
    "TASKS",
    "DigitsMLP",
    "TextTask",
    "digits",
    "generate_reviews",
    "get_task",
    "hf_text_task",
    "minilm_text",
    "read_text_data",
]
