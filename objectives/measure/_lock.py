"""Contention-free latency measurement for trials that run in parallel on one machine.

``MeasurementLock`` is a cross-process readers-writer lock on a file (``fcntl.flock``):
work phases of a trial (pruning, each training step, each teacher-logit and evaluation
batch, quantization and calibration, writing the weights file) hold it *shared*;
latency measurement holds it *exclusive*. A measurement therefore waits for the
in-flight steps of the other trials on the machine to finish and keeps new ones from
starting until it is done, so parallel trials do not inflate each other's latency
figures. A turnstile lock gives the writer priority (readers cannot starve it). Locks
are released by the kernel if a process dies. Per machine, not per cluster: contention
is a property of the machine.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager, nullcontext
from pathlib import Path

DEFAULT_LOCK_PATH = Path(tempfile.gettempdir()) / "slimsearch-measure.lock"


class MeasurementLock:
    """Readers-writer lock shared by every process on the machine that uses ``path``."""

    def __init__(self, path: str | Path = DEFAULT_LOCK_PATH) -> None:
        self.path = Path(path)
        self._rw: int | None = None
        self._gate: int | None = None
        self._depth = 0

    def _fds(self) -> tuple[int, int]:
        if self._rw is None or self._gate is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rw = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            self._gate = os.open(f"{self.path}.gate", os.O_RDWR | os.O_CREAT, 0o666)
        return self._rw, self._gate

    @contextmanager
    def working(self) -> Iterator[None]:
        """Hold the lock shared for one unit of work (re-entrant within a process)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        rw, gate = self._fds()
        fcntl.flock(gate, fcntl.LOCK_SH)  # waits while a measurement is queued or running
        fcntl.flock(gate, fcntl.LOCK_UN)
        fcntl.flock(rw, fcntl.LOCK_SH)
        self._depth = 1
        try:
            yield
        finally:
            self._depth = 0
            fcntl.flock(rw, fcntl.LOCK_UN)

    @contextmanager
    def measuring(self) -> Iterator[None]:
        """Hold the lock exclusively while timing."""
        rw, gate = self._fds()
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(rw, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(rw, fcntl.LOCK_UN)
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)

    def close(self) -> None:
        for fd in (self._rw, self._gate):
            if fd is not None:
                os.close(fd)
        self._rw = self._gate = None


_ACTIVE: MeasurementLock | None = None


def activate_measurement_lock(lock: MeasurementLock | None) -> None:
    """Make ``lock`` the one this process's trials use (None: no locking)."""
    global _ACTIVE
    _ACTIVE = lock


def working() -> ContextManager[None]:
    """Shared hold of the active lock, or a no-op when none is active."""
    return _ACTIVE.working() if _ACTIVE is not None else nullcontext()


def measuring() -> ContextManager[None]:
    """Exclusive hold of the active lock, or a no-op when none is active."""
    return _ACTIVE.measuring() if _ACTIVE is not None else nullcontext()
