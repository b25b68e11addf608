"""Schema migrations of the audit database (Alembic): every open brings it to the newest revision.

The revisions live in ``migrations/versions/`` beside this module, one file per change of
:mod:`~triage.audit.store.tables`; the first, ``0001``, is the schema the store created before
it had migrations. Such a database (the tables, no ``alembic_version`` table) is stamped as
``0001`` and then upgraded like any other.

To write the next revision, change ``tables.py``, then let Alembic compare it with a database
at the current head and write the script (review it; name it ``0002``, ``0003``, ...)::

    from alembic import command
    from triage.audit.store import AuditDB, migrate

    db = AuditDB("sqlite:////tmp/scratch.sqlite")
    with db.engine.begin() as conn:
        command.revision(migrate.alembic_config(conn), "what changed", autogenerate=True,
                         rev_id="0002")
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, column, inspect, select, table, text

from triage.audit.store.connection import AuditError

MIGRATIONS = Path(__file__).with_name("migrations")
INITIAL = "0001"
VERSION_TABLE = "alembic_version"
# PostgreSQL advisory lock held while a database is migrated (any constant; "audit" in ASCII)
_PG_LOCK = 0x6175646974


@cache
def scripts() -> ScriptDirectory:
    """The migration scripts (read once per process)."""
    return ScriptDirectory(str(MIGRATIONS))


def head() -> str:
    """The newest revision of the migration scripts."""
    return scripts().get_current_head()


def alembic_config(conn: Connection) -> Config:
    """An Alembic config that runs ``migrations/`` on ``conn`` (see ``migrations/env.py``)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def current(conn: Connection) -> str | None:
    """The database's revision; None when it has no ``alembic_version`` table."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    version = table(VERSION_TABLE, column("version_num"))
    return conn.execute(select(version.c.version_num)).scalar_one_or_none()


def upgrade(conn: Connection) -> None:
    """Bring the database of ``conn`` to the newest revision, inside the caller's transaction
    (a failed migration leaves the database as it was)."""
    if conn.dialect.name == "postgresql":
        # two processes opening a new database at once: the second waits, then finds it done
        # (SQLite's write transactions are serialised already)
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
    revision = current(conn)
    if revision == head():
        return
    if revision is not None and revision not in {s.revision for s in scripts().walk_revisions()}:
        raise AuditError(
            f"the audit database {conn.engine.url!r} is at schema revision {revision!r}, which "
            "this version of triage does not know (it was made by a newer one): upgrade triage"
        )
    config = alembic_config(conn)
    if revision is None and inspect(conn).has_table("batches"):
        command.stamp(config, INITIAL)  # made before migrations: it holds revision 0001
    command.upgrade(config, "head")
