"""Alembic's environment for the audit database: runs the revisions in ``versions/`` on the
connection that :func:`triage.audit.store.migrate.upgrade` passes in (inside the caller's
transaction), against the tables of :mod:`triage.audit.store.tables`."""

from __future__ import annotations

from alembic import context

from triage.audit.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the audit migrations run on an open connection: use "
        "triage.audit.store.migrate.alembic_config(connection)"
    )
context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
