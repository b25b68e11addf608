"""The prediction log: every message the service classified, with what it decided and why.

The service appends one record per message; the weekly audit (``triage audit-sample``) reads a
period back to draw its review batch. Storage is one SQLite file (default
``<project>/logs/predictions.sqlite``) in WAL mode, written with one transaction per
``append``: several threads and processes may append at once (SQLite's file locks serialise the
writers, ``busy_timeout`` makes them wait instead of failing), and a process killed in the middle
of an append leaves the log as it was before that append (the half-written transaction is rolled
back by the next opener). ``synchronous=NORMAL``: a crashed process loses nothing it committed; a
power cut may lose the last few commits but never corrupts the file.

Standard library only (``sqlite3``, ``json``, ``datetime``): the slim serving install imports it
without torch, transformers or SQLAlchemy.

A record is a dict with exactly the keys of :data:`FIELDS`. ``message_id`` defaults to a new
uuid4 hex and ``created_at`` to now (UTC) when missing or None; ``text``, ``text_masked`` and
``decision`` are required; the other keys default to None (heads that a bundle lacks).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
import weakref
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from triage.errors import TriageError
from triage.serving.record import PREDICTION_FIELDS
from triage.text import storable


class PredictionLogError(TriageError, ValueError):
    """A prediction log that cannot be used as given (not SQLite, another schema version, a bad
    time or setting); the message says what to do."""


#: the keys of a record, in storage order
FIELDS: tuple[str, ...] = (
    "message_id",
    "created_at",
    "text",
    "text_masked",
    "lang",
    *PREDICTION_FIELDS,
    "model_version",
    "channel",
    "rollout",  # the rollout state in force: {"automation": bool, "pilot": [...] | null}
)
_REQUIRED = ("text", "text_masked", "decision")
_JSON_FIELDS = ("intent_probs", "sentiment_probs")
_FLOAT_FIELDS = (
    "intent_prob",
    "intent_threshold",
    "sentiment_prob",
    "sentiment_threshold",
    "novelty",
)
DECISIONS = ("auto", "review")
SCHEMA_VERSION = 3  # 2: the rollout column, 3: novelty
#: what each older schema version lacks, added as NULL columns when such a log is opened
_UPGRADES = {1: "ALTER TABLE predictions ADD COLUMN rollout TEXT",
             2: "ALTER TABLE predictions ADD COLUMN novelty REAL"}  # fmt: skip
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    created_us INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    text TEXT NOT NULL,
    text_masked INTEGER NOT NULL,
    lang TEXT,
    intent TEXT,
    intent_prob REAL,
    intent_threshold REAL,
    intent_probs TEXT,
    sentiment TEXT,
    sentiment_prob REAL,
    sentiment_threshold REAL,
    sentiment_probs TEXT,
    decision TEXT NOT NULL,
    action TEXT,
    priority TEXT,
    reason TEXT,
    novelty REAL,
    model_version TEXT,
    channel TEXT,
    rollout TEXT
);
CREATE INDEX IF NOT EXISTS predictions_created ON predictions (created_us);
CREATE INDEX IF NOT EXISTS predictions_message ON predictions (message_id);
"""
_INSERT = (
    f"INSERT INTO predictions (created_us, {', '.join(FIELDS)}) "
    f"VALUES ({', '.join('?' * (len(FIELDS) + 1))})"
)
_SELECT = f"SELECT {', '.join(FIELDS)} FROM predictions"


# every open log of this process, so that a fork never copies one in the middle of a transaction
_OPEN_LOGS: weakref.WeakSet[PredictionLog] = weakref.WeakSet()
_HELD_AT_FORK: list[PredictionLog] = []


def _before_fork() -> None:
    """Wait until no thread is inside a log operation, and hold every log's lock through the
    fork: SQLite's in-process lock bookkeeping is copied into the child, and a copy taken
    mid-transaction would keep the file locked there forever."""
    _HELD_AT_FORK[:] = list(_OPEN_LOGS)
    for log in _HELD_AT_FORK:
        log._lock.acquire()


def _after_fork_in_parent() -> None:
    for log in _HELD_AT_FORK:
        log._lock.release()
    _HELD_AT_FORK.clear()


def _after_fork_in_child() -> None:
    """In a forked child: every log gets a fresh lock and opens its own connection on use."""
    for log in _HELD_AT_FORK:
        log._forget_parent()
    _HELD_AT_FORK.clear()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime counts as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _epoch_us(moment: datetime) -> int:
    """Microseconds since the epoch (exact integer arithmetic, no float rounding)."""
    delta = _utc(moment) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_time(value: str | datetime) -> datetime:
    """An ISO-8601 string (``Z`` accepted) or a datetime as an aware UTC datetime.

    Raises:
        PredictionLogError: when the string is not ISO-8601.
    """
    if isinstance(value, datetime):
        return _utc(value)
    try:
        return _utc(datetime.fromisoformat(value))
    except (TypeError, ValueError) as exc:
        raise PredictionLogError(
            f"prediction log: created_at {value!r} is not an ISO-8601 time "
            "(write e.g. 2026-11-16T09:30:00+00:00)"
        ) from exc


def _row(record: Mapping[str, Any]) -> tuple[Any, ...]:
    """One record as the INSERT parameters; raises ValueError naming what is wrong."""
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise PredictionLogError(
            f"prediction log: unknown record keys {unknown}; a record has only {list(FIELDS)}"
        )
    missing = [key for key in _REQUIRED if record.get(key) is None]
    if missing:
        raise PredictionLogError(f"prediction log: record lacks the required keys {missing}")
    if not isinstance(record["text"], str):
        raise PredictionLogError("prediction log: text must be a string")
    if record["decision"] not in DECISIONS:
        raise PredictionLogError(
            f"prediction log: decision {record['decision']!r} is not one of {DECISIONS}"
        )
    # NUL and lone surrogates: U+FFFD, the storage rule of every backend (triage.text.storable)
    values = {key: storable(record.get(key)) for key in FIELDS}
    if values["message_id"] is None:
        values["message_id"] = uuid.uuid4().hex
    values["message_id"] = str(values["message_id"])
    created = parse_time(values["created_at"] or datetime.now(UTC))
    values["created_at"] = (
        values["created_at"] if isinstance(values["created_at"], str) else created.isoformat()
    )
    values["text_masked"] = int(bool(values["text_masked"]))
    for key in _FLOAT_FIELDS:
        if values[key] is not None:
            values[key] = float(values[key])
    for key in _JSON_FIELDS:
        if values[key] is not None:
            values[key] = json.dumps(
                {str(label): float(p) for label, p in values[key].items()}, ensure_ascii=False
            )
    if values["rollout"] is not None:
        values["rollout"] = json.dumps(values["rollout"], ensure_ascii=False)
    return (_epoch_us(created), *(values[key] for key in FIELDS))


def _record(row: tuple[Any, ...]) -> dict[str, Any]:
    """A stored row back as a record dict."""
    record = dict(zip(FIELDS, row, strict=True))
    record["text_masked"] = bool(record["text_masked"])
    for key in (*_JSON_FIELDS, "rollout"):
        if record[key] is not None:
            record[key] = json.loads(record[key])
    return record


class PredictionLog:
    """An append-only SQLite log of predictions, safe across threads and processes.

    Args:
        path: the SQLite file; its folder is created when missing.
        retention_days: records older than this many days are removed by :meth:`purge`;
            None keeps everything.

    One connection per process (opened lazily, reopened in a forked child), used under a lock
    by this process's threads; SQLite's own locking orders the processes. Use one object per
    file in a process: two objects on the same file would share SQLite's process-wide locks.
    """

    def __init__(self, path: str | os.PathLike[str], retention_days: int | None) -> None:
        if retention_days is not None and retention_days <= 0:
            raise PredictionLogError(
                f"prediction log: retention_days must be positive or None, got {retention_days}"
            )
        self.path = Path(path)
        self.retention_days = retention_days
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        # connections inherited through fork: never used or closed in the child (closing them
        # there could disturb the parent's locks), only kept referenced so they are not
        # garbage-collected (which closes them)
        self._inherited: list[sqlite3.Connection] = []
        _OPEN_LOGS.add(self)
        with self._lock:
            self._connection()

    def _forget_parent(self) -> None:
        """After a fork, in the child: a new lock, and the parent's connection set aside (it was
        idle at the fork: :func:`_before_fork` held the lock)."""
        self._lock = threading.Lock()
        if self._conn is not None:
            self._inherited.append(self._conn)
        self._conn = None

    def _connection(self) -> sqlite3.Connection:
        """This process's connection, opened (and the schema created) on first use."""
        if self._conn is not None:
            return self._conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,  # explicit BEGIN/COMMIT below
            check_same_thread=False,  # shared by this process's threads under self._lock
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            while version in _UPGRADES:  # a log written before a column: add it (NULL)
                conn.execute(_UPGRADES[version])
                version += 1
            if version not in (0, SCHEMA_VERSION):
                conn.execute("ROLLBACK")
                raise PredictionLogError(
                    f"prediction log {self.path}: schema version {version}, this code reads "
                    f"{SCHEMA_VERSION}; upgrade social-triage or point the log at a new file"
                )
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except sqlite3.OperationalError:  # locked past the busy timeout, disk full, ...
            conn.close()
            raise
        except sqlite3.DatabaseError as exc:  # not an SQLite file
            conn.close()
            raise PredictionLogError(
                f"prediction log {self.path} cannot be opened as SQLite ({exc}); move the file "
                "away or point the log at another path"
            ) from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append ``records`` in one transaction: all of them are stored or none.

        Raises:
            ValueError: when a record has unknown keys, lacks a required one or has a bad value
                (nothing is written then).
        """
        rows = [_row(record) for record in records]
        if not rows:
            return
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT, rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def read(
        self, since: datetime | None = None, until: datetime | None = None, shadow: bool = False
    ) -> list[dict]:
        """The records with ``since <= created_at < until`` (either bound optional; naive
        datetimes count as UTC), oldest first (ties in the order they were appended). The
        shadow model's records (``rollout.arm == "shadow"``: they decided nothing) only with
        ``shadow``."""
        clauses, params = [], []
        if since is not None:
            clauses.append("created_us >= ?")
            params.append(_epoch_us(since))
        if until is not None:
            clauses.append("created_us < ?")
            params.append(_epoch_us(until))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            rows = (
                self._connection()
                .execute(f"{_SELECT}{where} ORDER BY created_us, seq", params)
                .fetchall()
            )
        records = [_record(row) for row in rows]
        if shadow:
            return records
        return [r for r in records if (r["rollout"] or {}).get("arm") != "shadow"]

    def purge(self, now: datetime | None = None) -> int:
        """Delete the records older than ``retention_days`` before ``now`` (default: the
        current time); return how many were deleted (0 when retention is None)."""
        if self.retention_days is None:
            return 0
        cutoff = _utc(now or datetime.now(UTC)) - timedelta(days=self.retention_days)
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                deleted = conn.execute(
                    "DELETE FROM predictions WHERE created_us < ?", (_epoch_us(cutoff),)
                ).rowcount
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return deleted

    def close(self) -> None:
        """Close this process's connection (a later call reopens it)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
            self._conn = None

    def __enter__(self) -> PredictionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
