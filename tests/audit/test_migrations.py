"""Migrations of the audit database: a database made before migrations existed is stamped and
upgraded with its reviews intact, a new one gets exactly the tables of ``tables.py``, and a
database from a newer version is refused."""

from __future__ import annotations

import json
import shutil

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from tests.audit.support import LABELS
from triage.audit.store import AuditDB, AuditError, metadata, migrate

# The schema exactly as the store created it before it had migrations (metadata.create_all of
# commit e969224, compiled for each backend: SERIAL is PostgreSQL's autoincrementing integer).
# Frozen here: it must not follow later changes of tables.py.
LEGACY_DDL = """
CREATE TABLE batches (
    id VARCHAR(100) NOT NULL, kind VARCHAR(20) NOT NULL, created_at VARCHAR(40) NOT NULL,
    since VARCHAR(40), until VARCHAR(40), population INTEGER, design JSON NOT NULL,
    labels JSON NOT NULL, PRIMARY KEY (id)
);
CREATE TABLE reviewers (
    id {serial} NOT NULL, name VARCHAR(100) NOT NULL, token_hash VARCHAR(300),
    adjudicator BOOLEAN NOT NULL, created_at VARCHAR(40) NOT NULL, PRIMARY KEY (id), UNIQUE (name)
);
CREATE TABLE items (
    id {serial} NOT NULL, batch_id VARCHAR(100) NOT NULL, position INTEGER NOT NULL,
    message_id VARCHAR(200) NOT NULL, text TEXT NOT NULL, lang VARCHAR(20), channel VARCHAR(100),
    message_created_at VARCHAR(40), model_version VARCHAR(200), intent VARCHAR(100),
    intent_prob FLOAT, intent_threshold FLOAT, intent_probs JSON, sentiment VARCHAR(100),
    sentiment_prob FLOAT, sentiment_threshold FLOAT, sentiment_probs JSON, decision VARCHAR(20),
    action VARCHAR(50), priority VARCHAR(20), reason TEXT, stratum VARCHAR(100) NOT NULL,
    in_control BOOLEAN NOT NULL, inclusion_prob FLOAT, reviews_required INTEGER NOT NULL,
    extra JSON, PRIMARY KEY (id), UNIQUE (batch_id, message_id),
    FOREIGN KEY(batch_id) REFERENCES batches (id)
);
CREATE INDEX items_batch_position ON items (batch_id, position);
CREATE TABLE sessions (
    id_hash VARCHAR(64) NOT NULL, reviewer_id INTEGER NOT NULL, expires_at VARCHAR(40) NOT NULL,
    PRIMARY KEY (id_hash), FOREIGN KEY(reviewer_id) REFERENCES reviewers (id)
);
CREATE TABLE claims (
    id {serial} NOT NULL, item_id INTEGER NOT NULL, reviewer_id INTEGER NOT NULL,
    claimed_at VARCHAR(40) NOT NULL, PRIMARY KEY (id), FOREIGN KEY(item_id) REFERENCES items (id),
    FOREIGN KEY(reviewer_id) REFERENCES reviewers (id)
);
CREATE INDEX claims_item ON claims (item_id);
CREATE TABLE reviews (
    id {serial} NOT NULL, item_id INTEGER NOT NULL, reviewer_id INTEGER NOT NULL,
    kind VARCHAR(20) NOT NULL, status VARCHAR(20) NOT NULL, intent VARCHAR(100),
    sentiment VARCHAR(100), note TEXT, previous_review_id INTEGER, prev_status VARCHAR(20),
    prev_intent VARCHAR(100), prev_sentiment VARCHAR(100), created_at VARCHAR(40) NOT NULL,
    source_ref VARCHAR(200), PRIMARY KEY (id), FOREIGN KEY(item_id) REFERENCES items (id),
    FOREIGN KEY(reviewer_id) REFERENCES reviewers (id),
    FOREIGN KEY(previous_review_id) REFERENCES reviews (id), UNIQUE (source_ref)
);
CREATE INDEX reviews_item ON reviews (item_id);
"""
TABLES = {"batches", "reviewers", "items", "sessions", "claims", "reviews"}


def make_legacy_database(url: str) -> None:
    """The tables as the store made them before migrations, a batch of one item, a reviewer
    and their review (plain SQL, as that code wrote them)."""
    engine = create_engine(url)
    serial = "SERIAL" if engine.dialect.name == "postgresql" else "INTEGER"
    with engine.begin() as conn:
        for statement in LEGACY_DDL.format(serial=serial).split(";"):
            if statement.strip():
                conn.exec_driver_sql(statement)
        conn.execute(
            text(
                "INSERT INTO batches (id, kind, created_at, since, until, population, design, "
                "labels) VALUES ('w46', 'sample', '2026-11-16T08:00:00.000000+00:00', "
                "'2026-11-09', '2026-11-16', 1200, :design, :labels)"
            ),
            {"design": '{"seed": 46}', "labels": json.dumps(LABELS)},
        )
        conn.execute(
            text(
                "INSERT INTO items (batch_id, position, message_id, text, lang, intent, "
                "intent_prob, intent_probs, sentiment, decision, action, stratum, in_control, "
                "inclusion_prob, reviews_required) VALUES ('w46', 0, 'm1', 'waar blijft mijn "
                "pakket?', 'nl', 'order_status', 0.91, :probs, 'neutral', 'auto', 'auto_reply', "
                "'automated', :yes, 0.25, 1)"
            ),
            {"probs": '{"order_status": 0.91, "other": 0.09}', "yes": True},
        )
        conn.execute(
            text(
                "INSERT INTO reviewers (name, token_hash, adjudicator, created_at) VALUES "
                "('alice', NULL, :no, '2026-11-16T08:01:00.000000+00:00')"
            ),
            {"no": False},
        )
        conn.execute(
            text(
                "INSERT INTO reviews (item_id, reviewer_id, kind, status, intent, sentiment, "
                "note, prev_intent, prev_sentiment, created_at) VALUES (1, 1, 'review', "
                "'corrected', 'refund_return', 'neutral', 'wants money back', 'order_status', "
                "'neutral', '2026-11-16T09:00:00.000000+00:00')"
            )
        )
    engine.dispose()


def test_a_database_made_before_migrations_is_stamped_and_upgraded(db_url):
    make_legacy_database(db_url)
    db = AuditDB(db_url)
    try:
        with db.engine.connect() as conn:
            assert migrate.current(conn) == migrate.head()
            assert set(inspect(conn).get_table_names()) >= TABLES
        [review] = db.history("w46")
        assert (review["reviewer"], review["status"], review["intent"], review["note"]) == (
            "alice",
            "corrected",
            "refund_return",
            "wants money back",
        )
        [item] = db.items("w46")
        assert item["intent_probs"] == {"order_status": 0.91, "other": 0.09}
        assert item["in_control"] is True and db.batch("w46")["labels"] == LABELS
        assert db.labels("w46")[item["id"]].intent == "refund_return"
        # the upgraded database takes new reviews (its id sequence continues)
        bob = db.reviewer_named("bob", create=True)
        assert db.add_review(item["id"], bob, "order_status", "neutral")["id"] == 2
    finally:
        db.close()
    # opening it again changes nothing
    again = AuditDB(db_url)
    assert len(again.history("w46")) == 2
    again.close()


NEXT_REVISION = """
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade():
    op.create_index("reviews_reviewer", "reviews", ["reviewer_id"])


def downgrade():
    op.drop_index("reviews_reviewer", table_name="reviews")
"""


@pytest.fixture
def with_a_later_revision(tmp_path, monkeypatch):
    """The shipped migrations plus a revision 0003 (an index), as the next change would add."""
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "0003_reviews_reviewer.py").write_text(NEXT_REVISION)
    monkeypatch.setattr(migrate, "MIGRATIONS", scripts)
    migrate.scripts.cache_clear()
    yield
    migrate.scripts.cache_clear()


def test_a_database_made_before_migrations_goes_through_later_revisions(
    db_url, with_a_later_revision
):
    make_legacy_database(db_url)
    db = AuditDB(db_url)
    try:
        with db.engine.connect() as conn:
            assert migrate.current(conn) == "0003"  # stamped 0001, then upgraded
            indexes = {ix["name"] for ix in inspect(conn).get_indexes("reviews")}
        assert {"reviews_item", "reviews_reviewer"} <= indexes
        assert [r["note"] for r in db.history("w46")] == ["wants money back"]
    finally:
        db.close()


def test_migrations_make_the_tables_of_tables_py(db_url):
    db = AuditDB(db_url)
    try:
        with db.engine.connect() as conn:
            assert migrate.current(conn) == migrate.head()
            # Alembic's autogenerate finds nothing to change: the migrations and tables.py agree
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        with db.engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "base")
        with db.engine.connect() as conn:
            assert not TABLES & set(inspect(conn).get_table_names())
    finally:
        db.close()


def test_a_database_from_a_newer_version_is_refused(db_url):
    AuditDB(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(AuditError, match=r"revision .9999.*upgrade triage"):
        AuditDB(db_url)
