"""How much slimsearch, Optuna and Ray say: quiet by default, more with ``--verbose``.

slimsearch logs through :mod:`logging` under the ``search``, ``objectives`` and ``spaces``
loggers and never configures logging on import. The CLI calls :func:`configure_logging`:

* ``0`` (default): slimsearch warnings (a failed trial, a round that completed nothing)
  and the progress lines of ``search.progress`` when not on a terminal; Optuna and Ray
  only report errors, and library deprecation warnings are hidden.
* ``1`` (``-v``): slimsearch's INFO records too (one line per finished trial, rounds);
  Optuna and Ray still only report warnings and errors.
* ``2`` (``-vv``): DEBUG for slimsearch, INFO for Optuna (study created, enqueue
  notices) and Ray, Python warnings shown.

:func:`quiet_libraries` is what ``Search.run`` uses from Python: it keeps Optuna's
INFO lines out of a progress display, unless the caller asked for DEBUG on the
``search`` logger.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

OUR_LOGGERS = ("search", "objectives", "spaces")
PROGRESS_LOGGER = "search.progress"

# Ray loggers whose WARNINGs are about Ray's own set-up (auth tokens, object store
# sizing, dashboard) rather than anything a slimsearch user can act on.
_RAY_INTERNAL = ("ray._private", "ray._common", "ray.util", "ray.dashboard", "ray.air")
_RAY_AUTH = "ray._private.authentication"
_FORMAT_QUIET = "%(levelname)s %(name)s: %(message)s"
_FORMAT_VERBOSE = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _ProgressOrWarning(logging.Filter):
    """Pass WARNING and above, and the INFO lines of the progress logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name == PROGRESS_LOGGER


def configure_logging(verbosity: int = 0) -> None:
    """Set up logging for the command line (see the module docstring for the levels).

    Args:
        verbosity: 0, 1 or 2 (larger values count as 2).
    """
    import optuna

    verbosity = max(0, min(int(verbosity), 2))
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_slimsearch", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._slimsearch = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(_FORMAT_VERBOSE if verbosity else _FORMAT_QUIET))
    if verbosity == 0:
        handler.addFilter(_ProgressOrWarning())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)

    ours = (logging.WARNING, logging.INFO, logging.DEBUG)[verbosity]
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(ours)
    logging.getLogger(PROGRESS_LOGGER).setLevel(logging.INFO)

    optuna.logging.set_verbosity(
        (optuna.logging.ERROR, optuna.logging.WARNING, optuna.logging.INFO)[verbosity]
    )
    ray_level = (logging.ERROR, logging.WARNING, logging.INFO)[verbosity]
    for name in _RAY_INTERNAL:
        logging.getLogger(name).setLevel(ray_level)
    logging.getLogger("ray.tune").setLevel(max(ray_level, logging.WARNING))

    logging.captureWarnings(True)
    if verbosity < 2:
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Within the block, Optuna logs warnings only and Ray's set-up chatter (auth token
    notices) is hidden — unless the ``search`` logger is at DEBUG. Levels are restored
    on exit."""
    import optuna

    if logging.getLogger("search").isEnabledFor(logging.DEBUG):
        yield
        return
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(before, optuna.logging.WARNING))
    ray_auth = logging.getLogger(_RAY_AUTH)
    ray_level = ray_auth.level
    ray_auth.setLevel(max(ray_auth.getEffectiveLevel(), logging.ERROR))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)
        ray_auth.setLevel(ray_level)
