"""Batches and their items: what was sampled for review, in queue order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from triage.audit.store.connection import AuditError, Store, now_iso
from triage.audit.store.tables import ITEM_FIELDS, batches, items
from triage.text import storable


class BatchStore(Store):
    """Batches and items (part of :class:`~triage.audit.store.AuditDB`)."""

    def create_batch(self, batch: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
        """Store a batch and its items in one transaction; return its id.

        Args:
            batch: ``id``, ``kind``, ``since``, ``until``, ``population``, ``design``, ``labels``.
            rows: the items in queue order, each with the keys of ``ITEM_FIELDS`` (missing ones
                are NULL).

        Raises:
            AuditError: a batch with this id exists.
        """
        batch, rows = storable(batch), storable(rows)  # NUL and lone surrogates: U+FFFD
        try:
            with self._write() as conn:
                conn.execute(
                    insert(batches).values(
                        id=batch["id"],
                        kind=batch["kind"],
                        created_at=now_iso(),
                        since=batch.get("since"),
                        until=batch.get("until"),
                        population=batch.get("population"),
                        design=batch["design"],
                        labels=batch["labels"],
                    )
                )
                if rows:
                    conn.execute(
                        insert(items),
                        [
                            {
                                "batch_id": batch["id"],
                                "position": i,
                                **{key: row.get(key) for key in ITEM_FIELDS},
                            }
                            for i, row in enumerate(rows)
                        ],
                    )
        except IntegrityError as exc:
            raise AuditError(
                f"batch {batch['id']!r} exists (or lists a message twice); choose another name "
                "with audit.batch=<name>"
            ) from exc
        return batch["id"]

    def batch(self, batch_id: str | None = None) -> dict[str, Any]:
        """One batch (the newest when ``batch_id`` is None).

        Raises:
            AuditError: no such batch, or no batch at all.
        """
        batch_id = storable(batch_id)
        query = select(batches)
        query = (
            query.where(batches.c.id == batch_id)
            if batch_id
            else query.order_by(batches.c.created_at.desc()).limit(1)
        )
        with self._read() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise AuditError(
                f"no audit batch {batch_id!r}; list them in the review app or draw one with "
                "`triage audit-sample`"
                if batch_id
                else "no audit batch yet: draw one with `triage audit-sample`"
            )
        return dict(row._mapping)

    def batch_ids(self) -> list[str]:
        """Every batch id, newest first."""
        with self._read() as conn:
            return list(
                conn.execute(select(batches.c.id).order_by(batches.c.created_at.desc())).scalars()
            )

    def items(self, batch_id: str) -> list[dict[str, Any]]:
        """The batch's items in queue order."""
        batch_id = storable(batch_id)
        with self._read() as conn:
            rows = conn.execute(
                select(items).where(items.c.batch_id == batch_id).order_by(items.c.position)
            )
            return [dict(r._mapping) for r in rows]

    def item(self, item_id: int) -> dict[str, Any]:
        with self._read() as conn:
            row = conn.execute(select(items).where(items.c.id == item_id)).first()
        if row is None:
            raise AuditError(f"no item {item_id}")
        return dict(row._mapping)
