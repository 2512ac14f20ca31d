"""Optuna RDB storage through SQLAlchemy: SQLite by default, PostgreSQL/MySQL to share.

Durability contract: every completed trial is committed to the database before the
next one is scheduled (Optuna's RDB storage commits per call). SQLite files are put in
WAL mode with a 60 s busy timeout so several processes can share one file. A trial that
is RUNNING carries a heartbeat that its driver renews; trials whose heartbeat is older
than the grace period are failed and re-queued once on the next run (see ``_study``).
"""

from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from search._errors import StorageError

if TYPE_CHECKING:
    import optuna

HEARTBEAT_INTERVAL_S = 5
GRACE_PERIOD_S = 20
_SCHEMES = ("sqlite", "postgresql", "mysql")


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe to print or log."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable storage URL>"


def _sqlite_path(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:":
        return None
    return Path(database)


def validate_url(url: str) -> None:
    """Check that ``url`` is a supported SQLAlchemy URL, without connecting.

    Raises:
        StorageError: naming the problem and the allowed forms.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not isinstance(url, str) or not url:
        raise StorageError(f"storage URL must be a non-empty string, got {url!r}")
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(
            f"storage {redact(url)!r} is not a database URL; use e.g. sqlite:///study.db "
            "or postgresql://user@host/db"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in _SCHEMES:
        raise StorageError(
            f"storage scheme {parsed.drivername!r} is not supported; use one of "
            f"{', '.join(s + '://' for s in _SCHEMES)}"
        )
    if backend == "sqlite":
        path = _sqlite_path(url)
        if path is None:
            raise StorageError(
                "an in-memory SQLite storage cannot be shared with Ray workers or resumed; "
                "use a file, e.g. sqlite:///study.db"
            )


def open_storage(url: str, *, create: bool = True) -> optuna.storages.RDBStorage:
    """Open (and for SQLite, create) the Optuna RDB storage at ``url``.

    Args:
        url: SQLAlchemy URL (``sqlite:///path.db``, ``postgresql://…``, ``mysql+pymysql://…``).
        create: For SQLite, whether a missing database file may be created. When False a
            missing file is a ``StorageError`` (reading commands must not create files).

    Raises:
        StorageError: bad URL, missing/unwritable file, unreachable server.
    """
    import optuna
    import sqlalchemy.exc

    validate_url(url)
    engine_kwargs: dict[str, object] = {"pool_pre_ping": True}
    from sqlalchemy.engine import make_url

    if make_url(url).get_backend_name() == "sqlite":
        path = _sqlite_path(url)
        db_path = path if path is not None else Path()
        if not db_path.exists():
            if not create:
                raise StorageError(
                    f"no database file {str(db_path)!r}; check the path, or run a search "
                    "first to create it"
                )
            if not db_path.parent.exists():
                raise StorageError(
                    f"cannot create {str(db_path)!r}: directory "
                    f"{str(db_path.parent)!r} does not exist"
                )
        elif db_path.is_dir():
            raise StorageError(f"storage path {str(db_path)!r} is a directory, not a file")
        _prepare_sqlite(db_path, create=create)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_INTERVAL_S,
                grace_period=GRACE_PERIOD_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryFailedTrialCallback(
                    max_retry=1
                ),
            )
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, OSError, RuntimeError) as exc:
        raise StorageError(
            f"cannot open storage {redact(url)}: {_first_line(exc)}"
        ) from None


def _prepare_sqlite(path: Path, *, create: bool) -> None:
    """Switch the file to WAL mode (persistent) so readers and writers do not block."""
    try:
        con = sqlite3.connect(str(path), timeout=60)
        try:
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                con.execute("PRAGMA journal_mode").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise StorageError(
            f"{str(path)!r} is not a usable SQLite database ({exc}); "
            "point --storage at a new file or a slimsearch study database"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {msg}"
