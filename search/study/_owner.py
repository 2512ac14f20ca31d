"""Who runs a trial, and whether that driver is still alive.

Every trial a search starts records its owner — host, PID namespace, PID, process
start time and a per-run token — so a sweep on the same machine can tell a dead driver
(or, in the same process, a search run that has ended) from a live one at once, without
waiting for the trial's heartbeat to go stale. Trials of other machines are judged by
their heartbeats (``_sweep``).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_LIVE_RUNS: set[str] = set()


def start_run() -> str:
    """Register a search run of this process; its token marks the trials it owns."""
    token = uuid.uuid4().hex
    _LIVE_RUNS.add(token)
    return token


def end_run(token: str) -> None:
    """The run ``token`` has ended: its trials still RUNNING are stale from now on."""
    _LIVE_RUNS.discard(token)


def owner_identity(run: str | None = None) -> dict[str, Any]:
    """This process as a trial owner: host, PID namespace, PID, start time, run token.

    Stored on every trial a search starts (system attribute ``TRIAL_OWNER``).
    """
    pid = os.getpid()
    return {"host": socket.gethostname(), "pidns": _pid_namespace(), "pid": pid,
            "start": _process_start(pid), "run": run}


def owner_alive(owner: Mapping[str, Any] | None) -> bool | None:
    """Whether the process in ``owner`` still runs; None when this machine cannot tell.

    Only a process on this host, in this PID namespace, whose start time is readable
    can be judged; anything else (another machine, no ``/proc``) is left to heartbeats.
    """
    if not isinstance(owner, Mapping) or owner.get("start") is None:
        return None
    if owner.get("host") != socket.gethostname() or owner.get("pidns") != _pid_namespace():
        return None
    if _pid_namespace() is None:
        return None
    pid = owner.get("pid")
    if not isinstance(pid, int):
        return None
    alive = _process_start(pid) == owner["start"]
    if alive and pid == os.getpid() and owner.get("run") is not None:
        return owner["run"] in _LIVE_RUNS  # this process: is that search still running?
    return alive


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _process_start(pid: int) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None
