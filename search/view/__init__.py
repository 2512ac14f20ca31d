"""What a person sees: the progress display, status text, the HTML report, figures,
logging levels and how numbers are written."""

from __future__ import annotations

from search.view._figures import plot_front
from search.view._format import summary as format_summary
from search.view._logging import (
    OUR_LOGGERS,
    PROGRESS_LOGGER,
    configure_logging,
    quiet_libraries,
)
from search.view._progress import Best, Progress, Snapshot, take_snapshot
from search.view._report import (
    MIN_TRIALS_FOR_IMPORTANCE,
    Report,
    build_report,
    param_importances,
    write_report,
)
from search.view._text import format_failures, format_status, print_front

__all__ = [
    "MIN_TRIALS_FOR_IMPORTANCE",
    "OUR_LOGGERS",
    "PROGRESS_LOGGER",
    "Best",
    "Progress",
    "Report",
    "Snapshot",
    "build_report",
    "configure_logging",
    "format_failures",
    "format_status",
    "format_summary",
    "param_importances",
    "plot_front",
    "print_front",
    "quiet_libraries",
    "take_snapshot",
    "write_report",
]
