"""Live progress of a running study: a rich display on a terminal, log lines elsewhere.

``Progress`` polls the study in the Optuna storage from a background thread, so what it
shows is what the database holds — trials finished by other drivers sharing the study
included — and it needs no hook into Ray Tune. Each poll builds a ``Snapshot``:
COMPLETE / RUNNING / FAIL counts, the best feasible value of each objective, the size of
the Pareto front, elapsed time and an estimate of the time left.

On a terminal a ``rich.live.Live`` panel on stderr is redrawn; anywhere else a one-line
``INFO`` record goes to the ``search.progress`` logger when the counts change (at most
every ``log_interval_s`` seconds) and when the run ends, so CI logs stay short.

Contract: the display only reads the storage; it never changes the study, and an error
while polling (e.g. a database briefly locked) is logged at DEBUG and retried on the
next poll.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from search.study import ATTR_BASELINE, METRICS, MODES, find_study, is_feasible
from search.view import _format
from search.view._logging import PROGRESS_LOGGER

if TYPE_CHECKING:
    from optuna.storages import BaseStorage
    from rich.console import Console, RenderableType

logger = logging.getLogger(PROGRESS_LOGGER)

_BETTER = {m: max if mode == "max" else min for m, mode in zip(METRICS, MODES, strict=True)}


@dataclass(frozen=True)
class Best:
    """The best feasible value of one objective and the trial that reached it."""

    value: float
    trial: int


@dataclass(frozen=True)
class Snapshot:
    """What the study holds at one moment.

    Attributes:
        target: Finished trials the run aims for (``Search.n_trials``).
        done: Finished trials in the study: COMPLETE, and PRUNED (stopped early).
        running: RUNNING trials (of every driver sharing the study).
        failed: FAIL trials.
        stopped: Of ``done``, the PRUNED trials (stopped early, e.g. unable to reach the
            accuracy floor).
        done_at_start: Finished trials when this run began (for the rate).
        best: Objective name → best feasible value (accuracy max, the others min).
        front_size: Number of Pareto-optimal trials (``study.best_trials``).
        baseline: The teacher's metrics, once measured.
        elapsed_s: Seconds since the run began.
    """

    target: int
    done: int = 0
    running: int = 0
    failed: int = 0
    stopped: int = 0
    done_at_start: int = 0
    best: Mapping[str, Best] = field(default_factory=dict)
    front_size: int = 0
    baseline: Mapping[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def eta_s(self) -> float | None:
        """Seconds left at this run's completion rate, or None before one completed."""
        finished = self.done - self.done_at_start
        left = self.target - self.done
        if left <= 0:
            return 0.0
        if finished <= 0 or self.elapsed_s <= 0:
            return None
        return left * self.elapsed_s / finished

    def line(self) -> str:
        """One log-friendly line."""
        parts = [f"trials {self.done}/{self.target} done ({self.stopped} stopped early), "
                 f"{self.running} running, {self.failed} failed"]
        if self.best:
            parts.append("best " + ", ".join(
                f"{_format.LABELS[k]} {_format.metric(k, b.value)} (#{b.trial})"
                for k, b in self.best.items()
            ))
            parts.append(f"front {self.front_size}")
        parts.append(f"elapsed {_format.clock(self.elapsed_s)}, eta {_format.clock(self.eta_s)}")
        return " | ".join(parts)


def take_snapshot(
    study: optuna.Study, target: int, *, done_at_start: int = 0, elapsed_s: float = 0.0
) -> Snapshot:
    """Read the counts, best values and front size of ``study``."""
    trials = study.get_trials(deepcopy=False)
    states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.FAIL, TrialState.PRUNED)
    counts = {state: 0 for state in states}
    feasible: list[optuna.trial.FrozenTrial] = []
    for t in trials:
        if t.state in counts:
            counts[t.state] += 1
        if is_feasible(t):
            feasible.append(t)
    best: dict[str, Best] = {}
    for i, (key, pick) in enumerate(_BETTER.items()):
        if feasible:
            t = pick(feasible, key=lambda t, i=i: t.values[i])
            best[key] = Best(float(t.values[i]), t.number)
    return Snapshot(
        target=target,
        done=counts[TrialState.COMPLETE] + counts[TrialState.PRUNED],
        running=counts[TrialState.RUNNING],
        failed=counts[TrialState.FAIL],
        stopped=counts[TrialState.PRUNED],
        done_at_start=done_at_start,
        best=best,
        front_size=len(study.best_trials) if feasible else 0,
        baseline=dict(study.user_attrs.get(ATTR_BASELINE) or {}),
        elapsed_s=elapsed_s,
    )


def render(snap: Snapshot, title: str) -> RenderableType:
    """The rich panel shown on a terminal."""
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(justify="right", style="bold")
    grid.add_column()
    bar = Table.grid(padding=(0, 1))
    bar.add_row(
        ProgressBar(total=max(snap.target, 1), completed=min(snap.done, snap.target), width=30),
        f"{snap.done}/{snap.target} done",
    )
    grid.add_row("trials", bar)
    failed = f"[red]{snap.failed} failed[/]" if snap.failed else "0 failed"
    grid.add_row("", f"[yellow]{snap.running} running[/] · {failed} · "
                     f"{snap.stopped} stopped early")
    base = snap.baseline
    if not base:
        grid.add_row("teacher", "measuring…")
    for key, b in snap.best.items():
        change = _format.versus(key, b.value, base)
        if change and key == "accuracy":
            change += " vs teacher"
        note = f"  ({change})" if change else ""
        grid.add_row(
            f"best {_format.LABELS[key]}",
            f"{_format.metric(key, b.value)}{note}  [dim]trial {b.trial}[/]",
        )
    if snap.best:
        grid.add_row("Pareto front", f"{snap.front_size} trial(s)")
    grid.add_row("time", f"{_format.clock(snap.elapsed_s)} elapsed, "
                         f"about {_format.clock(snap.eta_s)} left")
    return Panel(grid, title=title, title_align="left", expand=False)


class Progress:
    """Shows a study's progress while a block runs (a context manager).

    Example:
        >>> with Progress(storage, "digits", target=40):
        ...     search.run()

    Args:
        storage: The Optuna storage holding (or about to hold) the study.
        study_name: The study to watch; it may not exist yet when the block starts.
        target: Finished (COMPLETE or PRUNED) trials the run aims for.
        live: True: a rich live display; False: ``search.progress`` log lines;
            None: live when ``console`` (default stderr) is a terminal.
        console: Where the live display goes (default a stderr console).
        interval_s: Least seconds between polls of the storage (polls of a large study
            are spaced further, at 10x the time one takes).
        log_interval_s: Least seconds between two log lines (when not live).
    """

    def __init__(
        self,
        storage: BaseStorage,
        study_name: str,
        target: int,
        *,
        live: bool | None = None,
        console: Console | None = None,
        interval_s: float = 1.0,
        log_interval_s: float = 30.0,
    ) -> None:
        from rich.console import Console

        self._storage = storage
        self._study_name = study_name
        self._target = target
        self._console = console or Console(stderr=True)
        self.live = self._console.is_terminal if live is None else bool(live)
        self._interval = interval_s
        self._log_interval = log_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Any = None
        self._rerouted: list[tuple[logging.StreamHandler, Any]] = []
        self._start = 0.0
        self._done_at_start: int | None = None
        self._last_logged: tuple[int, int, int] | None = None
        self._last_log_time = 0.0
        self.snapshot = Snapshot(target=target)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Progress:
        self._start = time.monotonic()
        self.poll()
        if self.live:
            from rich.live import Live

            original = sys.stderr
            self._live = Live(
                self._renderable(),
                console=self._console,
                refresh_per_second=2,
                transient=False,
                redirect_stdout=True,
                redirect_stderr=True,
            )
            self._live.start()
            self._reroute_log_handlers(original, sys.stderr)
        self._thread = threading.Thread(target=self._loop, name="slimsearch-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.poll()
        if self._live is not None:
            self._live.update(self._renderable(), refresh=True)
            for handler, stream in self._rerouted:
                handler.setStream(stream)
            self._rerouted = []
            self._live.stop()
            self._live = None
        else:
            self._log(force=True)

    def _reroute_log_handlers(self, original: Any, proxy: Any) -> None:
        """Log records printed while the panel is shown go above it, not through it."""
        if proxy is original:
            return
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is original:
                self._rerouted.append((handler, handler.setStream(proxy)))

    # ---------------------------------------------------------------------- polling
    def poll(self) -> Snapshot:
        """Read the study now and return (and keep) the new snapshot."""
        try:
            study = find_study(self._storage, self._study_name)
            elapsed = time.monotonic() - self._start
            if study is None:
                self.snapshot = Snapshot(target=self._target, elapsed_s=elapsed)
            else:
                if self._done_at_start is None:
                    self._done_at_start = len(study.get_trials(
                        deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)
                    ))
                self.snapshot = take_snapshot(
                    study, self._target, done_at_start=self._done_at_start, elapsed_s=elapsed
                )
        except Exception as exc:  # a locked or unreachable database: try again next time
            logger.debug("progress poll failed: %s", exc)
        return self.snapshot

    def _loop(self) -> None:
        # Reading a large study takes a while: wait at least 10x the last poll, so the
        # display never costs the driver more than ~10 % of a core.
        wait = self._interval
        while not self._stop.wait(wait):
            began = time.monotonic()
            self.poll()
            wait = max(self._interval, 10 * (time.monotonic() - began))
            if self._live is not None:
                self._live.update(self._renderable())
            else:
                self._log()

    def _renderable(self) -> RenderableType:
        return render(self.snapshot, f"slimsearch · study {self._study_name!r}")

    def _log(self, force: bool = False) -> None:
        snap = self.snapshot
        key = (snap.done, snap.running, snap.failed)
        now = time.monotonic()
        too_soon = now - self._last_log_time < self._log_interval
        if not force and (key == self._last_logged or too_soon):
            return
        self._last_logged, self._last_log_time = key, now
        logger.info("%s", snap.line())

