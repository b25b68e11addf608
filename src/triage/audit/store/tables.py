"""The audit database's tables (SQLAlchemy Core): the one definition of its schema.

Six tables:

* ``reviewers``: name, the scrypt hash of the sign-in token (the token is shown once), whether
  the reviewer may adjudicate conflicts; ``sessions``: SHA-256 of the web app's session ids;
* ``batches`` and ``items``: what was sampled, with each item's stratum, inclusion probability
  and whether it needs one or two reviewers;
* ``reviews``: append-only. A review is never updated or deleted: changing one's mind adds a
  new row that records the previous values. A reviewer's current label for an item is their
  latest row; an adjudicator's row settles a conflict between two reviewers;
* ``claims``: which reviewer is looking at which item, so that two reviewers working at once get
  different items (a claim expires; a rare double review is harmless: both rows are kept).

A change here needs a migration in ``migrations/versions/`` that makes the same change to an
existing database (``tests/audit/test_migrations.py`` checks that the two agree).
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from triage.serving.record import PREDICTION_FIELDS

KINDS = ("review", "adjudication")
NAME_MAX = 100  # characters of a reviewer's name (the column's length, on every backend)

metadata = MetaData()

reviewers = Table(
    "reviewers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(NAME_MAX), nullable=False, unique=True),
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
    Column("novelty", Float),  # 0002: distance to the training data (NULL: not measured)
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
