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

On a GPU the contended resource is the GPU, not the machine: ``lock_path(base, device)``
gives each GPU its own lock file (keyed by the GPU's UUID, which every process sees the
same whatever its ``CUDA_VISIBLE_DEVICES``), so trials sharing one GPU (fractional
``gpus_per_trial``) exclude each other's timing while other GPUs keep working. CUDA
kernels run asynchronously: a shared hold given ``synchronize`` waits for the work it
queued (``torch.cuda.synchronize``) before it releases, so a measurement that acquires
the lock next never overlaps kernels still in flight.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager, nullcontext
from pathlib import Path

DEFAULT_LOCK_PATH = Path(tempfile.gettempdir()) / "slimsearch-measure.lock"


class MeasurementLock:
    """Readers-writer lock shared by every process on the machine that uses ``path``."""

    def __init__(
        self, path: str | Path = DEFAULT_LOCK_PATH, *, synchronize: Callable[[], None] | None = None
    ) -> None:
        """
        Args:
            path: The lock file; every process using the same path shares the lock.
            synchronize: Called at the end of each shared hold, before it is released
                (``torch.cuda.synchronize`` for a GPU), so work that was only queued is
                finished before a measurement can start.
        """
        self.path = Path(path)
        self.synchronize = synchronize
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
            try:
                if self.synchronize is not None:
                    self.synchronize()  # queued kernels finish inside the shared hold
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


def lock_path(base: str | Path, device: str = "cpu") -> Path:
    """The lock file for timing on ``device``: ``base`` itself for the CPU (one lock per
    machine), ``base`` + ``-gpu-<uuid>`` for a CUDA device (one lock per GPU).

    Raises:
        ValueError: ``device`` is a CUDA device and CUDA is not available.
    """
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return Path(base)
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available in this process")
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    ident = str(getattr(props, "uuid", "") or f"{props.name}-{props.pci_bus_id}")
    return Path(f"{base}-gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', ident)}")


def device_synchronizer(device: str = "cpu") -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` bound to ``device`` for a CUDA device, else None."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    return lambda: torch.cuda.synchronize(dev)


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
