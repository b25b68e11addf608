"""Storage of the weekly audit: reviewers, batches, items, reviews and their full history.

One database (``audit.db_url``): SQLite by default (``<project>/audit/audit.sqlite``, WAL mode,
a busy timeout, write transactions that take the write lock up front), PostgreSQL by URL
(``postgresql+psycopg://...``, with the driver installed). SQLAlchemy Core, five tables:

* ``reviewers``: name, the scrypt hash of the sign-in token (the token is shown once), whether
  the reviewer may adjudicate conflicts; ``sessions``: SHA-256 of the web app's session ids;
* ``batches`` and ``items``: what was sampled, with each item's stratum, inclusion probability
  and whether it needs one or two reviewers;
* ``reviews``: append-only. A review is never updated or deleted: changing one's mind adds a
  new row that records the previous values. A reviewer's current label for an item is their
  latest row; an adjudicator's row settles a conflict between two reviewers;
* ``claims``: which reviewer is looking at which item, so that two reviewers working at once get
  different items (a claim expires; a rare double review is harmless: both rows are kept).

Every write is one transaction: a failure anywhere in it (a crash, a constraint, an exception)
leaves nothing of it behind.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError

from triage.serving.record import PREDICTION_FIELDS

STATUSES = ("accepted", "corrected", "unclear")
KINDS = ("review", "adjudication")
SESSION_HOURS = 12
# scrypt cost: ~50 ms per sign-in on one core; tokens are random, so this only guards a leaked
# database against offline guessing of short hand-made tokens
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}

metadata = MetaData()

reviewers = Table(
    "reviewers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    # scrypt$n$r$p$salt$hash; NULL: cannot sign in (annotators imported from Label Studio)
    Column("token_hash", String(300)),
    Column("adjudicator", Boolean, nullable=False, default=False),
    Column("created_at", String(40), nullable=False),
)
sessions = Table(
    "sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("reviewer_id", Integer, ForeignKey("reviewers.id"), nullable=False),
    Column("expires_at", String(40), nullable=False),
)
batches = Table(
    "batches",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("kind", String(20), nullable=False),  # sample | label_issues
    Column("created_at", String(40), nullable=False),
    Column("since", String(40)),
    Column("until", String(40)),
    Column("population", Integer),  # messages in the period (sample batches)
    Column("design", JSON, nullable=False),  # the sampling design, to reproduce and reweight
    Column("labels", JSON, nullable=False),  # {head: [labels]} that reviewers choose from
)
ITEM_FIELDS = (
    "message_id",
    "text",
    "lang",
    "channel",
    "message_created_at",
    "model_version",
    *PREDICTION_FIELDS,
    "stratum",
    "in_control",
    "inclusion_prob",
    "reviews_required",
    "extra",
)
items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("batch_id", String(100), ForeignKey("batches.id"), nullable=False),
    Column("position", Integer, nullable=False),  # queue order (shuffled: strata not grouped)
    Column("message_id", String(200), nullable=False),
    Column("text", Text, nullable=False),
    Column("lang", String(20)),
    Column("channel", String(100)),
    Column("message_created_at", String(40)),
    Column("model_version", String(200)),
    Column("intent", String(100)),
    Column("intent_prob", Float),
    Column("intent_threshold", Float),
    Column("intent_probs", JSON),
    Column("sentiment", String(100)),
    Column("sentiment_prob", Float),
    Column("sentiment_threshold", Float),
    Column("sentiment_probs", JSON),
    Column("decision", String(20)),
    Column("action", String(50)),
    Column("priority", String(20)),
    Column("reason", Text),
    Column("stratum", String(100), nullable=False),
    Column("in_control", Boolean, nullable=False),
    Column("inclusion_prob", Float),  # NULL: not a probability sample (label-issue batches)
    Column("reviews_required", Integer, nullable=False),
    Column("extra", JSON),  # batch-kind specific facts (label issues: given labels, suggestion)
    UniqueConstraint("batch_id", "message_id"),
    Index("items_batch_position", "batch_id", "position"),
)
reviews = Table(
    "reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", Integer, ForeignKey("items.id"), nullable=False),
    Column("reviewer_id", Integer, ForeignKey("reviewers.id"), nullable=False),
    Column("kind", String(20), nullable=False),  # review | adjudication
    Column("status", String(20), nullable=False),  # accepted | corrected | unclear
    Column("intent", String(100)),
    Column("sentiment", String(100)),
    Column("note", Text),
    # this reviewer's previous row for the item (NULL: first) and the values it replaces: that
    # row's, or the model's for a first review
    Column("previous_review_id", Integer, ForeignKey("reviews.id")),
    Column("prev_status", String(20)),
    Column("prev_intent", String(100)),
    Column("prev_sentiment", String(100)),
    Column("created_at", String(40), nullable=False),
    Column("source_ref", String(200), unique=True),  # e.g. a Label Studio annotation id
    Index("reviews_item", "item_id"),
)
claims = Table(
    "claims",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", Integer, ForeignKey("items.id"), nullable=False),
    Column("reviewer_id", Integer, ForeignKey("reviewers.id"), nullable=False),
    Column("claimed_at", String(40), nullable=False),
    Index("claims_item", "item_id"),
)


class AuditError(ValueError):
    """A request the audit store cannot honour; the message says what to do."""


def now_iso() -> str:
    """The current UTC time as a fixed-width ISO-8601 string (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def hash_token(token: str) -> str:
    """``scrypt$n$r$p$salt$hash`` of a sign-in token, with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(token.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_token(token: str, stored: str | None) -> bool:
    """Whether ``token`` matches a :func:`hash_token` string (constant-time compare)."""
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(
        token.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(candidate.hex(), digest)


@dataclass(frozen=True)
class Reviewer:
    id: int
    name: str
    adjudicator: bool


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


class AuditDB:
    """The audit database; creates its tables on first use.

    Args:
        url: an SQLAlchemy URL (``audit.db_url``).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        with self._write() as conn:
            metadata.create_all(conn)

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

    # --- reviewers and sign-in ---------------------------------------------------------------

    def add_reviewer(self, name: str, adjudicator: bool = False, rotate: bool = False) -> str:
        """Create a reviewer (or give an existing one a new token with ``rotate``); return the
        sign-in token, which is stored only as a hash.

        Raises:
            AuditError: the name is empty or taken (without ``rotate``), or unknown (with it).
        """
        name = name.strip()
        if not name:
            raise AuditError("a reviewer needs a name: audit.reviewer.name=<name>")
        token = secrets.token_urlsafe(18)
        with self._write() as conn:
            row = conn.execute(select(reviewers.c.id).where(reviewers.c.name == name)).first()
            if rotate:
                if row is None:
                    raise AuditError(f"no reviewer named {name!r}; leave out rotate to add one")
                conn.execute(
                    update(reviewers)
                    .where(reviewers.c.id == row.id)
                    .values(token_hash=hash_token(token), adjudicator=adjudicator)
                )
                conn.execute(sessions.delete().where(sessions.c.reviewer_id == row.id))
                return token
            if row is not None:
                raise AuditError(
                    f"reviewer {name!r} exists; add audit.reviewer.rotate=true to give them a "
                    "new token (the old one stops working)"
                )
            conn.execute(
                insert(reviewers).values(
                    name=name,
                    token_hash=hash_token(token),
                    adjudicator=adjudicator,
                    created_at=now_iso(),
                )
            )
        return token

    def reviewer_named(self, name: str, create: bool = False) -> Reviewer:
        """The reviewer called ``name``; with ``create``, one without a token is made when
        missing (annotators imported from Label Studio)."""
        with self._write() as conn:
            row = conn.execute(select(reviewers).where(reviewers.c.name == name)).first()
            if row is None and create:
                conn.execute(
                    insert(reviewers).values(
                        name=name, token_hash=None, adjudicator=False, created_at=now_iso()
                    )
                )
                row = conn.execute(select(reviewers).where(reviewers.c.name == name)).first()
        if row is None:
            raise AuditError(f"no reviewer named {name!r}")
        return Reviewer(row.id, row.name, bool(row.adjudicator))

    def sign_in(self, name: str, token: str) -> tuple[Reviewer, str] | None:
        """Check a reviewer's token; on success a new session id (valid ``SESSION_HOURS``)."""
        with self._read() as conn:
            row = conn.execute(select(reviewers).where(reviewers.c.name == name.strip())).first()
        if row is None:
            hash_token(token)  # spend the same time as a real check: names are not probed
            return None
        if not verify_token(token, row.token_hash):
            return None
        session = secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(hours=SESSION_HOURS)
        with self._write() as conn:
            conn.execute(
                insert(sessions).values(
                    id_hash=hashlib.sha256(session.encode()).hexdigest(),
                    reviewer_id=row.id,
                    expires_at=expires.isoformat(timespec="microseconds"),
                )
            )
        return Reviewer(row.id, row.name, bool(row.adjudicator)), session

    def session_reviewer(self, session: str | None) -> Reviewer | None:
        """The reviewer of a live session id, or None."""
        if not session:
            return None
        with self._read() as conn:
            row = conn.execute(
                select(reviewers, sessions.c.expires_at)
                .join(sessions, sessions.c.reviewer_id == reviewers.c.id)
                .where(sessions.c.id_hash == hashlib.sha256(session.encode()).hexdigest())
            ).first()
        if row is None or row.expires_at < now_iso():
            return None
        return Reviewer(row.id, row.name, bool(row.adjudicator))

    def sign_out(self, session: str) -> None:
        with self._write() as conn:
            conn.execute(
                sessions.delete().where(
                    sessions.c.id_hash == hashlib.sha256(session.encode()).hexdigest()
                )
            )

    # --- batches -----------------------------------------------------------------------------

    def create_batch(self, batch: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
        """Store a batch and its items in one transaction; return its id.

        Args:
            batch: ``id``, ``kind``, ``since``, ``until``, ``population``, ``design``, ``labels``.
            rows: the items in queue order, each with the keys of ``ITEM_FIELDS`` (missing ones
                are NULL).

        Raises:
            AuditError: a batch with this id exists.
        """
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

    # --- reviews -----------------------------------------------------------------------------

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
        note = (note or "").strip() or None
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
        with self._read() as conn:
            return (
                conn.execute(select(reviews.c.id).where(reviews.c.source_ref == source_ref)).first()
                is not None
            )

    def history(self, batch_id: str) -> list[dict[str, Any]]:
        """Every review row of a batch, oldest first, with the reviewer's name."""
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

    # --- the reviewers' queue ------------------------------------------------------------------

    def next_item(
        self, batch_id: str, reviewer: Reviewer, claim_minutes: float = 10.0
    ) -> tuple[dict[str, Any], str] | None:
        """The next item for ``reviewer`` and why (``review`` or ``adjudication``), claimed for
        them; None when nothing is left for them.

        An item is offered while it has fewer distinct reviewers (plus live claims of others)
        than it requires and this reviewer has not reviewed it; adjudicators then get the
        conflicts nobody has adjudicated.
        """
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

    def progress(self, batch_id: str, reviewer: Reviewer | None = None) -> dict[str, int]:
        """Counts per state (:meth:`labels`), the batch size, and how many items ``reviewer``
        has reviewed."""
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
