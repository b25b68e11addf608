"""The initial schema: the six tables as the audit store created them before migrations.

A database made by that code (``metadata.create_all``, no ``alembic_version`` table) holds
exactly this schema; :func:`triage.audit.store.migrate.upgrade` stamps it with this revision.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("since", sa.String(40)),
        sa.Column("until", sa.String(40)),
        sa.Column("population", sa.Integer),
        sa.Column("design", sa.JSON, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
    )
    op.create_table(
        "reviewers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("token_hash", sa.String(300)),
        sa.Column("adjudicator", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(100), sa.ForeignKey("batches.id"), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("message_id", sa.String(200), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("lang", sa.String(20)),
        sa.Column("channel", sa.String(100)),
        sa.Column("message_created_at", sa.String(40)),
        sa.Column("model_version", sa.String(200)),
        sa.Column("intent", sa.String(100)),
        sa.Column("intent_prob", sa.Float),
        sa.Column("intent_threshold", sa.Float),
        sa.Column("intent_probs", sa.JSON),
        sa.Column("sentiment", sa.String(100)),
        sa.Column("sentiment_prob", sa.Float),
        sa.Column("sentiment_threshold", sa.Float),
        sa.Column("sentiment_probs", sa.JSON),
        sa.Column("decision", sa.String(20)),
        sa.Column("action", sa.String(50)),
        sa.Column("priority", sa.String(20)),
        sa.Column("reason", sa.Text),
        sa.Column("stratum", sa.String(100), nullable=False),
        sa.Column("in_control", sa.Boolean, nullable=False),
        sa.Column("inclusion_prob", sa.Float),
        sa.Column("reviews_required", sa.Integer, nullable=False),
        sa.Column("extra", sa.JSON),
        sa.UniqueConstraint("batch_id", "message_id"),
    )
    op.create_index("items_batch_position", "items", ["batch_id", "position"])
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("reviewer_id", sa.Integer, sa.ForeignKey("reviewers.id"), nullable=False),
        sa.Column("expires_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "claims",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), nullable=False),
        sa.Column("reviewer_id", sa.Integer, sa.ForeignKey("reviewers.id"), nullable=False),
        sa.Column("claimed_at", sa.String(40), nullable=False),
    )
    op.create_index("claims_item", "claims", ["item_id"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), nullable=False),
        sa.Column("reviewer_id", sa.Integer, sa.ForeignKey("reviewers.id"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("intent", sa.String(100)),
        sa.Column("sentiment", sa.String(100)),
        sa.Column("note", sa.Text),
        sa.Column("previous_review_id", sa.Integer, sa.ForeignKey("reviews.id")),
        sa.Column("prev_status", sa.String(20)),
        sa.Column("prev_intent", sa.String(100)),
        sa.Column("prev_sentiment", sa.String(100)),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("source_ref", sa.String(200), unique=True),
    )
    op.create_index("reviews_item", "reviews", ["item_id"])


def downgrade() -> None:
    for index, table in (
        ("reviews_item", "reviews"),
        ("claims_item", "claims"),
        ("items_batch_position", "items"),
    ):
        op.drop_index(index, table_name=table)
    for table in ("reviews", "claims", "sessions", "items", "reviewers", "batches"):
        op.drop_table(table)
