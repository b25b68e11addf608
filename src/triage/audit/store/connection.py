"""The connection to the audit database: the engine, its transactions, the store's error.

One database (``audit.db_url``): SQLite by default (``<project>/audit/audit.sqlite``, WAL mode,
a busy timeout, write transactions that take the write lock up front), PostgreSQL by URL
(``postgresql+psycopg://...``, with the driver installed).

Every write is one transaction: a failure anywhere in it (a crash, a constraint, an exception)
leaves nothing of it behind.

Text the two backends cannot both hold, NUL (``\\x00``: PostgreSQL refuses it) and lone UTF-16
surrogates (``\\ud800``: not encodable as UTF-8), is replaced by U+FFFD on the way in
(:func:`triage.text.storable`, used by every write and lookup), so both backends accept and
return the same text. This is lossy: a stored U+FFFD may have been either, or a U+FFFD sent as such.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from triage.errors import TriageError


class AuditError(TriageError, ValueError):
    """A request the audit store cannot honour; the message says what to do."""


def now_iso() -> str:
    """The current UTC time as a fixed-width ISO-8601 string (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun below, not by pysqlite
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # writers take the write lock when they begin (IMMEDIATE), so two writers wait for each
    # other (busy timeout) instead of one failing when it upgrades a read lock
    conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'DEFERRED')}")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get their folder, WAL and a busy timeout.

    Raises:
        AuditError: a URL SQLAlchemy cannot parse or whose driver is not installed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise AuditError(
            f"audit.db_url {url!r} is not a database URL; use sqlite:////abs/path.sqlite or "
            "postgresql+psycopg://user:pass@host/db"
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise AuditError(
            f"audit.db_url {url!r} needs the database driver {exc.name!r}: pip install it "
            "(for PostgreSQL: pip install 'psycopg[binary]')"
        ) from exc


class Store:
    """An open audit database: the engine and its read and write transactions (the part of
    :class:`~triage.audit.store.AuditDB` every other part builds on).

    Args:
        url: an SQLAlchemy URL (``audit.db_url``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """One write transaction: committed when the block ends, rolled back on any error."""
        with (
            self.engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn,
            conn.begin(),
        ):
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn
