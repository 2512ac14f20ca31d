"""Optuna RDB storage through SQLAlchemy: SQLite by default, PostgreSQL/MySQL to share.

Durability contract: every completed trial is committed to the database before the
next one is scheduled (Optuna's RDB storage commits per call). SQLite files are put in
WAL mode with a 60 s busy timeout so several processes can share one file. A trial that
is RUNNING carries a heartbeat that its driver renews; trials whose heartbeat is older
than the grace period, or whose driver process is known to be gone, are failed and
re-queued once (see ``search.study.sweep_stale``).

The heartbeat interval and grace period (seconds) default to 5 and 20 and can be set
with the environment variables ``SLIMSEARCH_HEARTBEAT_INTERVAL`` and
``SLIMSEARCH_GRACE_PERIOD``; every process sharing a study should use the same values.

Storage URLs may carry a password: it is never printed or logged in clear (``redact``,
and ``scrub`` for error texts that might echo it).
"""

from __future__ import annotations

import os
import sqlite3
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search._errors import StorageError
from search.study._retry import requeue_once

if TYPE_CHECKING:
    import optuna
    import sqlalchemy

HEARTBEAT_INTERVAL_S = 5
GRACE_PERIOD_S = 20
ENV_HEARTBEAT = "SLIMSEARCH_HEARTBEAT_INTERVAL"
ENV_GRACE = "SLIMSEARCH_GRACE_PERIOD"
_SCHEMES = ("sqlite", "postgresql", "mysql")


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``, safe to print or log."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable storage URL>"


def scrub(text: str, url: str) -> str:
    """``text`` with the password of ``url`` (if any) replaced by ``***``."""
    try:
        from sqlalchemy.engine import make_url

        password = make_url(url).password
    except Exception:
        return text
    if password:
        text = text.replace(str(password), "***")
        from urllib.parse import quote_plus

        text = text.replace(quote_plus(str(password)), "***")
    return text


def heartbeat_settings() -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds, from the environment or the defaults.

    Raises:
        StorageError: a variable that is not a positive integer, or a grace period not
            longer than the interval.
    """
    values = []
    for name, default in ((ENV_HEARTBEAT, HEARTBEAT_INTERVAL_S), (ENV_GRACE, GRACE_PERIOD_S)):
        text = os.environ.get(name, "").strip()
        if not text:
            values.append(default)
            continue
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise StorageError(
                f"{name}={text!r} is not a positive whole number of seconds; unset it or "
                f"use e.g. {default}"
            )
        values.append(value)
    interval, grace = values
    if grace <= interval:
        raise StorageError(
            f"{ENV_GRACE}={grace} must be longer than {ENV_HEARTBEAT}={interval} "
            "(a live trial renews its heartbeat every interval); use e.g. 4x the interval"
        )
    return interval, grace


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
    interval, grace = heartbeat_settings()
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
        elif create and not db_path.stat().st_mode & 0o222:
            raise StorageError(
                f"storage file {str(db_path)!r} is read-only; a search writes to it: make it "
                "writable (chmod u+w) or point --storage at a copy"
            )
        _prepare_sqlite(db_path, create=create)
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        for attempt in range(5):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    storage = optuna.storages.RDBStorage(
                        url,
                        engine_kwargs=engine_kwargs,
                        heartbeat_interval=interval,
                        grace_period=grace,
                        heartbeat_stale_trial_callback=requeue_once,
                    )
                break
            except sqlalchemy.exc.SQLAlchemyError as exc:
                # Several processes creating the schema of a new database at once: one
                # wins, the others see a table or version row that already exists and
                # simply open it again.
                text = str(exc).lower()
                racing = isinstance(exc, sqlalchemy.exc.IntegrityError) or any(
                    s in text for s in ("already exists", "duplicate", "unique constraint")
                )
                if not racing or attempt == 4:
                    raise
                time.sleep(0.1 * (attempt + 1))
        if make_url(url).get_backend_name() == "sqlite":
            _serialize_sqlite_transactions(storage.engine)
        return storage
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, OSError, RuntimeError) as exc:
        raise StorageError(
            f"cannot open storage {redact(url)}: {scrub(_first_line(exc), url)}; "
            + (
                "check that the file is a writable SQLite database"
                if make_url(url).get_backend_name() == "sqlite"
                else "check that the server runs and the URL (user, host, port, database)"
            )
        ) from None


def absolute_sqlite(url: str) -> str:
    """``url`` with a relative SQLite path made absolute (Ray workers run elsewhere)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return url
    path = Path(parsed.database)
    if path.is_absolute() or parsed.database == ":memory:":
        return url
    return parsed.set(database=str(path.resolve())).render_as_string(hide_password=False)


def _serialize_sqlite_transactions(engine: sqlalchemy.engine.Engine) -> None:
    """Start every SQLite transaction with ``BEGIN IMMEDIATE``.

    pysqlite otherwise begins a transaction only at the first write, so two processes
    can both read a WAITING trial and both claim it (Optuna's ``SELECT … FOR UPDATE`` is
    a no-op on SQLite). An immediate transaction takes the write lock first; the other
    process waits for it (busy timeout), then reads the claimed state. Reads of other
    connections are not blocked (WAL).
    """
    from sqlalchemy import event

    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself

    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    engine.dispose()  # connections made while Optuna set up the schema lack the hooks


def _prepare_sqlite(path: Path, *, create: bool) -> None:
    """Check the file is SQLite; for writing (``create``) switch it to WAL mode.

    WAL (persistent) lets readers and writers not block each other. Reading commands
    open the file read-only and leave it byte for byte as it is.
    """
    deadline = time.monotonic() + 60.0
    delay = 0.05
    while True:
        try:
            _check_sqlite(path, create=create)
            return
        except sqlite3.OperationalError as exc:
            # Changing the journal mode needs an exclusive lock, and SQLite returns
            # "database is locked" for it without waiting on the busy timeout when
            # another driver is creating the schema at the same moment: that is a
            # race to wait out, not a bad file.
            if not _is_lock_contention(exc) or time.monotonic() > deadline:
                raise StorageError(
                    f"{str(path)!r} is not a usable SQLite database ({exc}); "
                    "point --storage at a new file or a slimsearch study database"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
        except sqlite3.DatabaseError as exc:
            raise StorageError(
                f"{str(path)!r} is not a usable SQLite database ({exc}); "
                "point --storage at a new file or a slimsearch study database"
            ) from None


def _check_sqlite(path: Path, *, create: bool) -> None:
    if create:
        con = sqlite3.connect(str(path), timeout=60)
    else:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=60)
    try:
        if not create:
            con.execute("PRAGMA schema_version").fetchone()
        elif con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode=WAL").fetchone()
    finally:
        con.close()


def _is_lock_contention(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database is busy" in text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else type(exc).__name__
    return f"{type(exc).__name__}: {msg}"
