"""Reviews: appended, never changed; where each item stands after them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from triage.audit.store.auth import Reviewer
from triage.audit.store.batches import BatchStore
from triage.audit.store.connection import AuditError, now_iso
from triage.audit.store.tables import KINDS, batches, items, reviewers, reviews
from triage.text import storable


@dataclass
class ItemLabel:
    """Where an item stands after review.

    ``state``: ``pending`` (no review yet), ``partial`` (fewer reviewers than required),
    ``reviewed`` (the required reviewers agree), ``conflict`` (two reviewers disagree and no
    adjudicator has decided), ``adjudicated``, or ``unclear`` (the decisive review(s) said
    unclear). ``intent``/``sentiment``: the label used for estimates: the adjudicated or agreed
    one, else the primary (earliest) reviewer's; None where there is none.
    """

    item_id: int
    state: str
    intent: str | None
    sentiment: str | None
    reviewers: list[str]
    # each reviewer's current (status, intent, sentiment), in the order they first reviewed
    current: list[tuple[str, str, str | None, str | None]]


class ReviewStore(BatchStore):
    """The reviews of a batch's items (part of :class:`~triage.audit.store.AuditDB`)."""

    def add_review(
        self,
        item_id: int,
        reviewer: Reviewer,
        intent: str | None,
        sentiment: str | None,
        unclear: bool = False,
        note: str | None = None,
        kind: str = "review",
        source_ref: str | None = None,
        created_at: str | None = None,
    ) -> dict[str, Any]:
        """Append a review (one transaction) and return its row.

        The status follows from the labels: ``unclear`` when flagged (labels dropped), else
        ``accepted`` when both labels equal what the item showed (the model's prediction, or
        the training label in a label-issue batch), else ``corrected``.

        Raises:
            AuditError: unknown item, a label not in the batch's labels, an adjudication by a
                reviewer who may not adjudicate, or a ``source_ref`` already imported.
        """
        if kind not in KINDS:
            raise AuditError(f"review kind must be one of {KINDS}, got {kind!r}")
        if kind == "adjudication" and not reviewer.adjudicator:
            raise AuditError(f"{reviewer.name} may not adjudicate (audit.reviewer.adjudicator)")
        note = storable((note or "").strip()) or None
        intent, sentiment, source_ref = storable(intent), storable(sentiment), storable(source_ref)
        try:
            with self._write() as conn:
                item = conn.execute(select(items).where(items.c.id == item_id)).first()
                if item is None:
                    raise AuditError(f"no item {item_id}")
                labels = conn.execute(
                    select(batches.c.labels).where(batches.c.id == item.batch_id)
                ).scalar_one()
                if unclear:
                    status, intent, sentiment = "unclear", None, None
                else:
                    for head, value in (("intent", intent), ("sentiment", sentiment)):
                        allowed = labels.get(head) or []
                        if value is not None and value not in allowed:
                            raise AuditError(f"{head} {value!r} is not one of {allowed}")
                    same = intent == item.intent and sentiment == item.sentiment
                    status = "accepted" if same else "corrected"
                previous = conn.execute(
                    select(reviews)
                    .where(
                        reviews.c.item_id == item_id,
                        reviews.c.reviewer_id == reviewer.id,
                        reviews.c.kind == kind,
                    )
                    .order_by(reviews.c.id.desc())
                    .limit(1)
                ).first()
                prev = (
                    (previous.status, previous.intent, previous.sentiment)
                    if previous is not None
                    else (None, item.intent, item.sentiment)
                )
                review_id = conn.execute(
                    insert(reviews).values(
                        item_id=item_id,
                        reviewer_id=reviewer.id,
                        kind=kind,
                        status=status,
                        intent=intent,
                        sentiment=sentiment,
                        note=note,
                        previous_review_id=None if previous is None else previous.id,
                        prev_status=prev[0],
                        prev_intent=prev[1],
                        prev_sentiment=prev[2],
                        created_at=created_at or now_iso(),
                        source_ref=source_ref,
                    )
                ).inserted_primary_key[0]
                row = conn.execute(select(reviews).where(reviews.c.id == review_id)).one()
        except IntegrityError as exc:
            raise AuditError(f"review {source_ref!r} was imported before") from exc
        return dict(row._mapping)

    def has_source_ref(self, source_ref: str) -> bool:
        source_ref = storable(source_ref)
        with self._read() as conn:
            return (
                conn.execute(select(reviews.c.id).where(reviews.c.source_ref == source_ref)).first()
                is not None
            )

    def history(self, batch_id: str) -> list[dict[str, Any]]:
        """Every review row of a batch, oldest first, with the reviewer's name."""
        batch_id = storable(batch_id)
        with self._read() as conn:
            rows = conn.execute(
                select(reviews, reviewers.c.name.label("reviewer"))
                .join(items, items.c.id == reviews.c.item_id)
                .join(reviewers, reviewers.c.id == reviews.c.reviewer_id)
                .where(items.c.batch_id == batch_id)
                .order_by(reviews.c.id)
            )
            return [dict(r._mapping) for r in rows]

    def labels(self, batch_id: str) -> dict[int, ItemLabel]:
        """Per item of the batch, where it stands (see :class:`ItemLabel`)."""
        required = {row["id"]: row["reviews_required"] for row in self.items(batch_id)}
        latest: dict[tuple[int, str, str], dict[str, Any]] = {}
        first_seen: dict[tuple[int, str, str], int] = {}
        for row in self.history(batch_id):
            key = (row["item_id"], row["kind"], row["reviewer"])
            latest[key] = row
            first_seen.setdefault(key, row["id"])
        by_item: dict[int, dict[str, list[dict[str, Any]]]] = defaultdict(
            lambda: {"review": [], "adjudication": []}
        )
        for key in sorted(latest, key=first_seen.__getitem__):
            by_item[key[0]][key[1]].append(latest[key])
        out = {}
        for item_id, needed in required.items():
            group = by_item.get(item_id, {"review": [], "adjudication": []})
            current = [
                (r["reviewer"], r["status"], r["intent"], r["sentiment"]) for r in group["review"]
            ]
            names = [c[0] for c in current]
            if group["adjudication"]:
                last = max(group["adjudication"], key=lambda r: r["id"])
                state = "unclear" if last["status"] == "unclear" else "adjudicated"
                out[item_id] = ItemLabel(
                    item_id, state, last["intent"], last["sentiment"], names, current
                )
                continue
            if not current:
                out[item_id] = ItemLabel(item_id, "pending", None, None, names, current)
                continue
            primary = current[0]
            verdicts = {c[1:] if c[1] == "unclear" else ("labelled", *c[2:]) for c in current}
            if len(verdicts) > 1:
                state = "conflict"
            elif len(current) < needed:
                state = "partial"
            else:
                state = "unclear" if primary[1] == "unclear" else "reviewed"
            out[item_id] = ItemLabel(item_id, state, primary[2], primary[3], names, current)
        return out

    def my_latest(self, item_id: int, reviewer: Reviewer) -> dict[str, Any] | None:
        """This reviewer's current review of an item (any kind), or None."""
        with self._read() as conn:
            row = conn.execute(
                select(reviews)
                .where(reviews.c.item_id == item_id, reviews.c.reviewer_id == reviewer.id)
                .order_by(reviews.c.id.desc())
                .limit(1)
            ).first()
        return None if row is None else dict(row._mapping)
