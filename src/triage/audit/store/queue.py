"""The reviewers' queue: which item each reviewer gets next, claimed so that reviewers working
at once get different items, and how far a batch is."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select

from triage.audit.store.auth import Reviewer
from triage.audit.store.connection import now_iso
from triage.audit.store.reviews import ReviewStore
from triage.audit.store.tables import batches, claims, items, reviews
from triage.text import storable


class QueueStore(ReviewStore):
    """The reviewers' queue (part of :class:`~triage.audit.store.AuditDB`)."""

    def next_item(
        self, batch_id: str, reviewer: Reviewer, claim_minutes: float = 10.0
    ) -> tuple[dict[str, Any], str] | None:
        """The next item for ``reviewer`` and why (``review`` or ``adjudication``), claimed for
        them; None when nothing is left for them.

        An item is offered while it has fewer distinct reviewers (plus live claims of others)
        than it requires and this reviewer has not reviewed it; adjudicators then get the
        conflicts nobody has adjudicated.
        """
        batch_id = storable(batch_id)
        cutoff = (datetime.now(UTC) - timedelta(minutes=claim_minutes)).isoformat(
            timespec="microseconds"
        )
        with self._write() as conn:
            if conn.dialect.name != "sqlite":
                # SQLite's write lock (BEGIN IMMEDIATE) serialises this read-then-claim; other
                # databases let two transactions read the same free slot and both claim it,
                # so lock the batch's row: one claim per batch at a time
                conn.execute(select(batches.c.id).where(batches.c.id == batch_id).with_for_update())
            queue = conn.execute(
                select(items.c.id, items.c.reviews_required)
                .where(items.c.batch_id == batch_id)
                .order_by(items.c.position)
            ).all()
            done = conn.execute(
                select(reviews.c.item_id, reviews.c.reviewer_id)
                .join(items, items.c.id == reviews.c.item_id)
                .where(items.c.batch_id == batch_id, reviews.c.kind == "review")
                .distinct()
            ).all()
            live = conn.execute(
                select(claims.c.item_id, claims.c.reviewer_id)
                .join(items, items.c.id == claims.c.item_id)
                .where(items.c.batch_id == batch_id, claims.c.claimed_at >= cutoff)
                .distinct()
            ).all()
            reviewed_by: dict[int, set[int]] = defaultdict(set)
            for item_id, reviewer_id in done:
                reviewed_by[item_id].add(reviewer_id)
            claimed_by: dict[int, set[int]] = defaultdict(set)
            for item_id, reviewer_id in live:
                claimed_by[item_id].add(reviewer_id)
            chosen, why = None, "review"
            for item_id, required in queue:
                if reviewer.id in reviewed_by[item_id]:
                    continue
                busy = reviewed_by[item_id] | (claimed_by[item_id] - {reviewer.id})
                if len(busy) < required:
                    chosen = item_id
                    break
            if chosen is None and reviewer.adjudicator:
                chosen, why = (
                    self._next_conflict(conn, batch_id, reviewer, claimed_by, reviewed_by),
                    "adjudication",
                )
            if chosen is None:
                return None
            conn.execute(
                insert(claims).values(item_id=chosen, reviewer_id=reviewer.id, claimed_at=now_iso())
            )
            row = conn.execute(select(items).where(items.c.id == chosen)).one()
        return dict(row._mapping), why

    def _next_conflict(
        self,
        conn: Connection,
        batch_id: str,
        reviewer: Reviewer,
        claimed_by: dict[int, set[int]],
        reviewed_by: dict[int, set[int]],
    ) -> int | None:
        """The first conflict nobody adjudicated and no other adjudicator holds (the claims of
        the reviewers who made the conflict do not count)."""
        adjudicated = set(
            conn.execute(
                select(reviews.c.item_id)
                .join(items, items.c.id == reviews.c.item_id)
                .where(items.c.batch_id == batch_id, reviews.c.kind == "adjudication")
            ).scalars()
        )
        rows = conn.execute(
            select(reviews.c.id, reviews.c.item_id, reviews.c.reviewer_id, reviews.c.status)
            .add_columns(reviews.c.intent, reviews.c.sentiment)
            .join(items, items.c.id == reviews.c.item_id)
            .where(items.c.batch_id == batch_id, reviews.c.kind == "review")
            .order_by(items.c.position, reviews.c.id)
        ).all()
        current: dict[int, dict[int, tuple]] = defaultdict(dict)
        for row in rows:
            verdict = (
                (row.status,)
                if row.status == "unclear"
                else ("labelled", row.intent, row.sentiment)
            )
            current[row.item_id][row.reviewer_id] = verdict
        for item_id, verdicts in current.items():
            if item_id in adjudicated or len(set(verdicts.values())) < 2:
                continue
            if claimed_by[item_id] - reviewed_by[item_id] - {reviewer.id}:
                continue
            return item_id
        return None

    def may_review(self, reviewer: Reviewer, item_id: int) -> bool:
        """Whether ``reviewer`` may read and review an item: one the queue offered them (a claim
        of theirs, expired or not), one they reviewed before (to go back), or, for an
        adjudicator, one in conflict. An unknown item is refused like any other."""
        with self._read() as conn:
            batch_id = conn.execute(
                select(items.c.batch_id).where(items.c.id == item_id)
            ).scalar_one_or_none()
            if batch_id is None:
                return False
            for table in (claims, reviews):
                mine = conn.execute(
                    select(table.c.id)
                    .where(table.c.item_id == item_id, table.c.reviewer_id == reviewer.id)
                    .limit(1)
                ).first()
                if mine is not None:
                    return True
        if not reviewer.adjudicator:
            return False
        label = self.labels(batch_id).get(item_id)
        return label is not None and label.state == "conflict"

    def progress(self, batch_id: str, reviewer: Reviewer | None = None) -> dict[str, int]:
        """Counts per state (:meth:`labels`), the batch size, and how many items ``reviewer``
        has reviewed."""
        batch_id = storable(batch_id)
        states = self.labels(batch_id)
        counts: dict[str, int] = defaultdict(int)
        for label in states.values():
            counts[label.state] += 1
        out = {"items": len(states), **counts}
        out["done"] = sum(counts[s] for s in ("reviewed", "adjudicated", "unclear"))
        if reviewer is not None:
            with self._read() as conn:
                out["mine"] = conn.execute(
                    select(func.count(func.distinct(reviews.c.item_id)))
                    .join(items, items.c.id == reviews.c.item_id)
                    .where(items.c.batch_id == batch_id, reviews.c.reviewer_id == reviewer.id)
                ).scalar_one()
        return out
