"""The prediction log and the rollout state in a database several service replicas share
(PostgreSQL; any SQLAlchemy URL works), for ``serve.prediction_log.url`` and
``serve.rollout.state_url``: every replica writes one log, obeys one switch, and the weekly
audit samples all of them. Needs SQLAlchemy and a driver (``pip install
social-triage[postgres]``); the default stays the standard-library SQLite file.

The log keeps the records, rules and reads of :mod:`triage.serving.predlog` (same fields, the
same storage rule for NUL and lone surrogates, one transaction per append); the state the
format of :mod:`triage.serving.rollout` in a one-row table with a version number.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from triage.errors import ConfigError
from triage.serving.predlog import (
    _FLOAT_FIELDS,
    FIELDS,
    PredictionLog,
    _epoch_us,
    _record,
    _row,
    _utc,
)
from triage.serving.rollout import RolloutState

log = logging.getLogger(__name__)

#: how stale a replica's view of the rollout state in a database may be (it re-reads at most
#: this often before a model call); the admin endpoint waits this long before acknowledging
STATE_STALENESS_S = 0.1


def _engine(url: str) -> Any:
    try:
        from sqlalchemy import create_engine
    except ImportError as exc:
        raise ConfigError(
            f"{url}: a database URL needs SQLAlchemy and its driver: pip install "
            "'social-triage[postgres]'"
        ) from exc
    return create_engine(url, pool_pre_ping=True)


def _create_tables(engine: Any, table: Any, then: Callable[[], None] | None = None) -> None:
    """Create ``table`` unless it exists (and run ``then``), retried: replicas starting together
    race to create it, and PostgreSQL lets the loser fail on its catalogue's unique index
    (``pg_type_typname_nsp_index``) rather than wait."""
    for attempt in range(5):
        try:
            table.metadata.create_all(engine, checkfirst=True)
            if then is not None:
                then()
            return
        except Exception:
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))


class SqlPredictionLog:
    """The prediction log in the database at ``url`` (table ``predictions``); the interface
    of :class:`~triage.serving.predlog.PredictionLog`."""

    def __init__(self, url: str, retention_days: int | None) -> None:
        from sqlalchemy import BigInteger, Column, Float, Integer, MetaData, Table, Text

        self.url, self.retention_days = url, retention_days
        self.engine = _engine(url)
        types = {"text_masked": Integer, **dict.fromkeys(_FLOAT_FIELDS, Float)}
        self.table = Table(
            "predictions",
            MetaData(),
            Column(
                "seq",
                BigInteger().with_variant(Integer, "sqlite"),
                primary_key=True,
                autoincrement=True,
            ),
            Column("created_us", BigInteger, nullable=False, index=True),
            *(Column(name, types.get(name, Text), index=name == "message_id") for name in FIELDS),
        )
        _create_tables(self.engine, self.table, then=self._add_missing_columns)

    def _add_missing_columns(self) -> None:
        """A table written by an older version lacks newer columns (``rollout``, ``novelty``):
        add them, NULL for the rows already there."""
        from sqlalchemy import inspect, text

        have = {c["name"] for c in inspect(self.engine).get_columns("predictions")}
        missing = [c for c in self.table.columns if c.name not in have]
        if missing:
            with self.engine.begin() as conn:
                for column in missing:
                    kind = column.type.compile(dialect=self.engine.dialect)
                    conn.execute(text(f"ALTER TABLE predictions ADD COLUMN {column.name} {kind}"))

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append ``records`` in one transaction: all of them are stored or none."""
        rows = [dict(zip(("created_us", *FIELDS), _row(r), strict=True)) for r in records]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(self.table.insert(), rows)

    def read(
        self, since: datetime | None = None, until: datetime | None = None, shadow: bool = False
    ) -> list[dict]:
        """As :meth:`PredictionLog.read`."""
        from sqlalchemy import select

        t = self.table
        query = select(*(t.c[name] for name in FIELDS)).order_by(t.c.created_us, t.c.seq)
        if since is not None:
            query = query.where(t.c.created_us >= _epoch_us(since))
        if until is not None:
            query = query.where(t.c.created_us < _epoch_us(until))
        with self.engine.connect() as conn:
            records = [_record(tuple(row)) for row in conn.execute(query)]
        if shadow:
            return records
        return [r for r in records if (r["rollout"] or {}).get("arm") != "shadow"]

    def purge(self, now: datetime | None = None) -> int:
        """As :meth:`PredictionLog.purge`."""
        if self.retention_days is None:
            return 0
        cutoff = _utc(now or datetime.now(UTC)) - timedelta(days=self.retention_days)
        with self.engine.begin() as conn:
            result = conn.execute(
                self.table.delete().where(self.table.c.created_us < _epoch_us(cutoff))
            )
        return result.rowcount

    def close(self) -> None:
        self.engine.dispose()


def log_exists(location: str | os.PathLike[str]) -> bool:
    """Whether there is a log to read at ``location`` (a database URL always counts)."""
    return "://" in str(location) or Path(location).is_file()


def open_prediction_log(
    location: str | os.PathLike[str], retention_days: int | None
) -> PredictionLog | SqlPredictionLog:
    """The log at ``location``: a database URL (``postgresql+psycopg://...``) or a SQLite file."""
    if "://" in str(location):
        return SqlPredictionLog(str(location), retention_days)
    return PredictionLog(Path(location), retention_days)


class RolloutTable:
    """The rollout state in the database at ``url`` (table ``rollout_state``, one row with a
    version that every write increments); the interface of
    :class:`~triage.serving.rollout.RolloutFile`. Re-read at most every
    :data:`STATE_STALENESS_S` seconds."""

    max_staleness_s = STATE_STALENESS_S

    def __init__(self, url: str, default: RolloutState) -> None:
        from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, Text

        self.url, self.default = url, default
        self.engine = _engine(url)
        self.table = Table(
            "rollout_state",
            MetaData(),
            Column("id", Integer, primary_key=True),
            Column("version", BigInteger, nullable=False),
            Column("state", Text, nullable=False),
        )
        _create_tables(self.engine, self.table)
        self._seen_version: int | None = None
        self._checked = 0.0
        self.state = default
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> bool:
        """Re-read the row when it changed (at most every :data:`STATE_STALENESS_S` s)."""
        from sqlalchemy import select

        now = time.monotonic()
        if not force and now - self._checked < self.max_staleness_s:
            return False
        self._checked = now
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    select(self.table.c.version, self.table.c.state).where(self.table.c.id == 1)
                ).first()
        except Exception as exc:  # the database away: keep the state in force, say so
            log.error("rollout state in %s unreadable, kept the current one: %s", self.url, exc)
            return False
        version = None if row is None else int(row.version)
        if version == self._seen_version:
            return False
        new = (
            self.default
            if row is None
            else RolloutState.from_dict(json.loads(row.state), f"{self.url} rollout_state")
        )
        self._seen_version = version
        changed, self.state = new != self.state, new
        return changed

    def write(self, state: RolloutState, who: str) -> RolloutState:
        """Store ``state`` for every replica (one transaction); return it."""
        stamped = replace(state, changed_at=datetime.now(UTC).isoformat(), changed_by=who)
        text = json.dumps(stamped.to_dict(), ensure_ascii=False)
        t = self.table
        with self.engine.begin() as conn:
            updated = conn.execute(
                t.update().where(t.c.id == 1).values(version=t.c.version + 1, state=text)
            )
            if not updated.rowcount:
                conn.execute(t.insert().values(id=1, version=1, state=text))
        self.refresh(force=True)
        return self.state
