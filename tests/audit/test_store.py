"""The audit database: hashed tokens, append-only reviews with their history, item states,
the reviewers' queue, concurrent reviewers and a crash in the middle of a save."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest
from sqlalchemy import event, select, text

from tests.audit.support import LABELS, make_batch
from triage.audit.store import AuditDB, AuditError, verify_token
from triage.audit.store.tables import NAME_MAX, reviews
from triage.errors import TriageError


def test_tokens_are_stored_hashed_and_sign_in_works(db):
    token = db.add_reviewer("alice")
    with db.engine.connect() as conn:
        raw = conn.execute(
            text("select token_hash from reviewers where name = 'alice'")
        ).scalar_one()
    assert token not in raw and raw.startswith("scrypt$")
    assert verify_token(token, raw) and not verify_token(token + "x", raw)
    assert db.sign_in("alice", "wrong") is None
    assert db.sign_in("bob", token) is None
    who, session = db.sign_in("alice", token)
    assert who.name == "alice" and not who.adjudicator
    assert db.session_reviewer(session) == who
    assert db.session_reviewer("forged") is None
    db.sign_out(session)
    assert db.session_reviewer(session) is None
    with pytest.raises(AuditError, match="exists"):
        db.add_reviewer("alice")
    new = db.add_reviewer("alice", adjudicator=True, rotate=True)
    assert db.sign_in("alice", token) is None
    assert db.sign_in("alice", new)[0].adjudicator


def test_reviews_are_appended_with_previous_values(db):
    items = make_batch(db)
    db.add_reviewer("alice")
    alice = db.reviewer_named("alice")
    item = items[0]
    first = db.add_review(item["id"], alice, item["intent"], item["sentiment"])
    assert first["status"] == "accepted"
    assert (first["prev_intent"], first["prev_sentiment"]) == (item["intent"], item["sentiment"])
    assert first["previous_review_id"] is None
    other = next(label for label in LABELS["intent"] if label != item["intent"])
    second = db.add_review(item["id"], alice, other, item["sentiment"], note="  wrong intent ")
    assert second["status"] == "corrected" and second["note"] == "wrong intent"
    assert second["previous_review_id"] == first["id"]
    assert (second["prev_status"], second["prev_intent"]) == ("accepted", item["intent"])
    third = db.add_review(item["id"], alice, None, None, unclear=True)
    assert third["status"] == "unclear" and third["prev_intent"] == other
    history = db.history("b1")
    assert [h["status"] for h in history] == ["accepted", "corrected", "unclear"]
    assert all(h["reviewer"] == "alice" and h["created_at"] for h in history)
    with pytest.raises(AuditError, match="not one of"):
        db.add_review(item["id"], alice, "no_such_label", None)
    with pytest.raises(AuditError, match="may not adjudicate"):
        db.add_review(item["id"], alice, other, None, kind="adjudication")
    assert len(db.history("b1")) == 3  # the refused ones wrote nothing


def test_item_states_and_the_label_used(db):
    items = make_batch(db, n=6, dual=4)
    for name in ("alice", "bob"):
        db.add_reviewer(name)
    db.add_reviewer("carol", adjudicator=True)
    alice, bob, carol = (db.reviewer_named(n) for n in ("alice", "bob", "carol"))
    i0, i1, i2, i3, i4, _ = items
    other = lambda item: next(x for x in LABELS["intent"] if x != item["intent"])  # noqa: E731
    db.add_review(i0["id"], alice, i0["intent"], i0["sentiment"])  # dual, one review: partial
    db.add_review(i1["id"], alice, other(i1), i1["sentiment"])  # dual, both agree: reviewed
    db.add_review(i1["id"], bob, other(i1), i1["sentiment"])
    db.add_review(i2["id"], alice, i2["intent"], i2["sentiment"])  # dual, disagree: conflict
    db.add_review(i2["id"], bob, other(i2), i2["sentiment"])
    db.add_review(i3["id"], alice, i3["intent"], i3["sentiment"])  # conflict, adjudicated
    db.add_review(i3["id"], bob, None, None, unclear=True)
    db.add_review(i3["id"], carol, other(i3), "positive", kind="adjudication")
    db.add_review(i4["id"], bob, None, None, unclear=True)  # single, unclear
    states = db.labels("b1")
    got = {item["id"]: states[item["id"]].state for item in items}
    assert list(got.values()) == [
        "partial",
        "reviewed",
        "conflict",
        "adjudicated",
        "unclear",
        "pending",
    ]
    assert states[i1["id"]].intent == other(i1)
    assert states[i2["id"]].intent == i2["intent"]  # the primary (first) reviewer's
    assert states[i2["id"]].reviewers == ["alice", "bob"]
    assert (states[i3["id"]].intent, states[i3["id"]].sentiment) == (other(i3), "positive")
    # changing one's mind resolves a conflict: the current label is the latest per reviewer
    db.add_review(i2["id"], bob, i2["intent"], i2["sentiment"])
    assert db.labels("b1")[i2["id"]].state == "reviewed"
    progress = db.progress("b1", alice)
    assert progress["items"] == 6 and progress["done"] == 4 and progress["mine"] == 4


def test_queue_gives_each_item_the_reviewers_it_needs(db):
    items = make_batch(db, n=6, dual=2)
    for name in ("alice", "bob"):
        db.add_reviewer(name)
    db.add_reviewer("carol", adjudicator=True)
    alice, bob, carol = (db.reviewer_named(n) for n in ("alice", "bob", "carol"))
    a1, why = db.next_item("b1", alice)
    assert why == "review" and a1["id"] == items[0]["id"]
    # claimed by alice, but the first item needs two reviewers: bob gets it too
    b1, _ = db.next_item("b1", bob)
    assert b1["id"] == items[0]["id"]
    a2, _ = db.next_item("b1", alice)  # alice asks again without saving: the same item back
    assert a2["id"] == a1["id"]
    db.add_review(a1["id"], alice, a1["intent"], a1["sentiment"])
    db.add_review(b1["id"], bob, b1["intent"], "positive")  # disagrees on sentiment
    seen = {"alice": [], "bob": []}
    for who in (alice, bob, alice, bob, alice, bob, alice, bob):
        found = db.next_item("b1", who)
        if found is None:
            continue
        seen[who.name].append(found[0]["id"])
        db.add_review(found[0]["id"], who, found[0]["intent"], found[0]["sentiment"])
    single = [i["id"] for i in items if i["reviews_required"] == 1]
    # the second dual item went to both; each single item to exactly one of them
    assert items[1]["id"] in seen["alice"] and items[1]["id"] in seen["bob"]
    assert sorted(x for x in seen["alice"] + seen["bob"] if x in single) == sorted(single)
    assert db.next_item("b1", alice) is None and db.next_item("b1", bob) is None
    # the conflict goes to the adjudicator, once the queue is empty
    item, why = db.next_item("b1", carol)
    assert (item["id"], why) == (items[0]["id"], "adjudication")
    db.add_review(item["id"], carol, item["intent"], "neutral", kind="adjudication")
    assert db.next_item("b1", carol) is None


def test_concurrent_reviewers_lose_nothing(db):
    items = make_batch(db, n=40, dual=10)
    names = [f"r{i}" for i in range(6)]
    for name in names:
        db.add_reviewer(name)
    saved: list[int] = []
    errors: list[BaseException] = []

    def work(name: str) -> None:
        who = db.reviewer_named(name)
        try:
            while (found := db.next_item("b1", who)) is not None:
                item = found[0]
                saved.append(
                    db.add_review(item["id"], who, item["intent"], item["sentiment"])["id"]
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    history = db.history("b1")
    assert sorted(h["id"] for h in history) == sorted(saved)  # every save is there
    per_item = {i["id"]: {h["reviewer"] for h in history if h["item_id"] == i["id"]} for i in items}
    # the queue's claims are serialised (SQLite's write lock, PostgreSQL's lock on the batch
    # row): every item got exactly the reviewers it needs
    assert all(len(per_item[i["id"]]) == i["reviews_required"] for i in items)
    assert db.progress("b1")["done"] == 40


def test_a_save_that_fails_midway_leaves_nothing(db):
    items = make_batch(db)
    db.add_reviewer("alice")
    alice = db.reviewer_named("alice")

    def explode(conn, clauseelement, *args, **kwargs):
        if getattr(clauseelement, "table", None) is reviews and clauseelement.is_insert:
            raise RuntimeError("crash after the row was written, before the commit")

    # fires after the INSERT ran inside the transaction
    event.listen(db.engine, "after_execute", explode)
    with pytest.raises(RuntimeError, match="crash"):
        db.add_review(items[0]["id"], alice, items[0]["intent"], items[0]["sentiment"])
    event.remove(db.engine, "after_execute", explode)
    with db.engine.connect() as conn:
        assert conn.execute(select(reviews)).all() == []
    db.add_review(items[0]["id"], alice, items[0]["intent"], items[0]["sentiment"])
    assert len(db.history("b1")) == 1


def test_a_killed_process_mid_transaction_leaves_nothing(db_url, tmp_path):
    url = db_url
    db = AuditDB(url)
    items = make_batch(db)
    db.add_reviewer("alice")
    db.add_review(items[0]["id"], db.reviewer_named("alice"), items[0]["intent"], None)
    # a writer inserts a review and is killed before it commits
    script = textwrap.dedent(
        f"""
        import time
        from sqlalchemy import insert
        from triage.audit.store import AuditDB
        from triage.audit.store.tables import reviews
        db = AuditDB({url!r})
        with db._write() as conn:
            conn.execute(insert(reviews).values(item_id={items[1]["id"]}, reviewer_id=1,
                kind="review", status="accepted", created_at="2026-11-16T00:00:00"))
            print("inserted", flush=True)
            time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert child.stdout.readline().strip() == "inserted"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    history = db.history("b1")
    assert len(history) == 1 and history[0]["item_id"] == items[0]["id"]
    if url.startswith("sqlite"):
        check = sqlite3.connect(tmp_path / "audit.sqlite").execute("PRAGMA integrity_check")
        assert check.fetchone()[0] == "ok"
    # the write lock died with the process: the next save goes through
    db.add_review(items[1]["id"], db.reviewer_named("alice"), items[1]["intent"], None)
    assert len(db.history("b1")) == 2
    db.close()


def test_errors_say_what_to_do(tmp_path, db):
    with pytest.raises(AuditError, match="not a database URL"):
        AuditDB("no-such-scheme")
    with pytest.raises(AuditError, match="audit-sample"):
        db.batch()
    make_batch(db)
    with pytest.raises(AuditError, match="exists"):
        make_batch(db)
    with pytest.raises(AuditError, match="no audit batch 'nope'"):
        db.batch("nope")
    # the CLI prints a TriageError in one line; existing `except ValueError` still catch it
    assert issubclass(AuditError, TriageError) and issubclass(AuditError, ValueError)


def test_nul_and_lone_surrogates_are_stored_alike_on_every_backend(db):
    """A message may carry NUL (valid JSON, logged by the service): PostgreSQL refuses it in
    text, so the store replaces it (and lone surrogates, which neither backend can encode) by
    U+FFFD in every field, JSON ones too, and returns the same on SQLite and PostgreSQL."""
    rows = [
        {
            "message_id": "m\x00 1",
            "text": "hello\x00world \ud800!",
            "channel": "web\x00",
            "intent": "spam",
            "intent_probs": {"spam": 0.9, "odd\x00key": 0.1},
            "stratum": "rest",
            "in_control": True,
            "inclusion_prob": 0.5,
            "reviews_required": 1,
            "extra": {"given": ["a\x00b"]},
        }
    ]
    db.create_batch({"id": "b\x00", "kind": "sample", "design": {}, "labels": LABELS}, rows)
    (item,) = db.items("b\x00")
    assert item["batch_id"] == "b\ufffd" and item["message_id"] == "m\ufffd 1"
    assert item["text"] == "hello\ufffdworld \ufffd!" and item["channel"] == "web\ufffd"
    assert item["intent_probs"] == {"spam": 0.9, "odd\ufffdkey": 0.1}
    assert item["extra"] == {"given": ["a\ufffdb"]}
    assert db.batch("b\x00")["id"] == "b\ufffd"
    token = db.add_reviewer("ali\x00ce")
    who, _ = db.sign_in("ali\x00ce", token)
    assert who.name == "ali\ufffdce"
    review = db.add_review(item["id"], who, "spam", None, note="see\x00 \udfff")
    assert review["note"] == "see\ufffd \ufffd"
    assert db.history("b\x00")[0]["note"] == "see\ufffd \ufffd"
    assert db.progress("b\x00", who)["mine"] == 1
    assert db.sign_in("ali\ud800ce", token + "\ud800") is None  # no crash on a bad token either


def test_reviewer_names_have_one_limit_on_every_backend(db):
    """SQLite ignores a column's length, PostgreSQL refuses: the store checks it for both."""
    long = "n" * (NAME_MAX + 1)
    with pytest.raises(AuditError, match=f"at most {NAME_MAX} characters"):
        db.add_reviewer(long)
    with pytest.raises(AuditError, match=f"at most {NAME_MAX} characters"):
        db.reviewer_named(long, create=True)
    name = "n" * NAME_MAX
    token = db.add_reviewer(f"  {name} ")
    assert db.sign_in(name, token)[0].name == name
