"""The audit database: one object for the store's parts, brought to the current schema on open."""

from __future__ import annotations

from typing import Any

from triage.audit.store.auth import ReviewerStore
from triage.audit.store.migrate import upgrade
from triage.audit.store.queue import QueueStore
from triage.audit.store.reviews import ItemLabel


class AuditDB(ReviewerStore, QueueStore):
    """The audit database; creates its tables on first use and migrates older ones.

    Args:
        url: an SQLAlchemy URL (``audit.db_url``).
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)
        with self._write() as conn:
            upgrade(conn)


def load_batch(
    url: str, batch_id: str | None
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[int, ItemLabel]]:
    """A batch (default: the newest), its items in queue order and their current labels."""
    db = AuditDB(url)
    try:
        batch = db.batch(batch_id)
        return batch, db.items(batch["id"]), db.labels(batch["id"])
    finally:
        db.close()
