"""The prediction log: round trip, concurrent appends from threads and processes, a writer
killed mid-append, retention and reading by period."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from triage.serving.predlog import FIELDS, PredictionLog

T0 = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


def make_record(i: int, created: datetime = T0, **changes) -> dict:
    record = {
        "message_id": f"m{i}",
        "created_at": created.isoformat(),
        "text": f"Waar blijft mijn pakket {i}? 📦 <script>alert(1)</script>",
        "text_masked": False,
        "lang": "nl",
        "intent": "order_status",
        "intent_prob": 0.91,
        "intent_threshold": 0.8,
        "intent_probs": {"order_status": 0.91, "refund_return": 0.09},
        "sentiment": "negative",
        "sentiment_prob": 0.7,
        "sentiment_threshold": None,
        "sentiment_probs": {"negative": 0.7, "neutral": 0.2, "positive": 0.1},
        "decision": "auto",
        "action": "auto_reply",
        "priority": "normal",
        "reason": "confident order question",
        "novelty": 0.12,
        "model_version": "abc123-0f0f",
        "channel": "instagram_dm",
        "rollout": {"automation": True, "pilot": None, "arm": "champion", "latency_ms": 4.5},
    }
    record.update(changes)
    return record


def test_round_trip(tmp_path):
    path = tmp_path / "logs" / "predictions.sqlite"
    records = [make_record(0), make_record(1, T0 + timedelta(seconds=1), lang=None)]
    # a bundle without a sentiment head: those keys are absent and come back as None
    no_sentiment = make_record(2, T0 + timedelta(seconds=2))
    for key in ("sentiment", "sentiment_prob", "sentiment_threshold", "sentiment_probs"):
        del no_sentiment[key]
    with PredictionLog(path, retention_days=None) as log:
        log.append([*records, no_sentiment])
        back = log.read()
    assert [tuple(r) for r in back] == [FIELDS] * 3
    assert back[:2] == records
    assert back[2]["sentiment"] is None and back[2]["sentiment_probs"] is None
    assert back[2]["intent_probs"] == {"order_status": 0.91, "refund_return": 0.09}
    # reopened from a new object: the data is on disk
    assert PredictionLog(path, retention_days=30).read() == back


def test_a_log_written_before_a_newer_column_is_upgraded_in_place(tmp_path):
    """A schema-2 log (before novelty) and a schema-1 log (before rollout as well) open with
    their rows intact, the new columns NULL, and take new records."""
    from triage.serving.predlog import _SCHEMA, SCHEMA_VERSION

    for version, dropped in ((2, ["novelty"]), (1, ["novelty", "rollout"])):
        path = tmp_path / f"v{version}.sqlite"
        schema = _SCHEMA
        for column in dropped:
            schema = schema.replace(
                f"    {column} {'REAL' if column == 'novelty' else 'TEXT'},\n", ""
            )
            schema = schema.replace(f",\n    {column} TEXT\n", "\n")
        conn = sqlite3.connect(path)
        conn.executescript(schema)
        kept = [f for f in FIELDS if f not in dropped]
        old = make_record(0)
        row = {f: json.dumps(old[f]) if isinstance(old[f], dict) else old[f] for f in kept}
        conn.execute(
            f"INSERT INTO predictions (created_us, {', '.join(kept)}) "
            f"VALUES ({', '.join('?' * (len(kept) + 1))})",
            [int(T0.timestamp() * 1e6), *row.values()],
        )
        conn.execute(f"PRAGMA user_version = {version}")
        conn.commit()
        conn.close()
        with PredictionLog(path, retention_days=None) as log:
            log.append([make_record(1, T0 + timedelta(seconds=1))])
            first, second = log.read()
        assert first["message_id"] == "m0" and first["novelty"] is None
        assert first["intent_probs"] == old["intent_probs"]
        assert second["novelty"] == 0.12
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()


def test_defaults_and_validation(tmp_path):
    log = PredictionLog(tmp_path / "p.sqlite", retention_days=None)
    minimal = {"text": "hi", "text_masked": True, "decision": "review"}
    log.append([minimal, minimal])
    first, second = log.read()
    assert len(first["message_id"]) == 32 and first["message_id"] != second["message_id"]
    assert abs(datetime.fromisoformat(first["created_at"]) - datetime.now(UTC)) < timedelta(
        minutes=1
    )
    assert first["intent"] is None and first["text_masked"] is True
    with pytest.raises(ValueError, match="unknown record keys"):
        log.append([{**minimal, "intnet": "spam"}])
    with pytest.raises(ValueError, match="required keys"):
        log.append([{"text": "x", "text_masked": False}])
    with pytest.raises(ValueError, match="decision"):
        log.append([{**minimal, "decision": "maybe"}])
    with pytest.raises(ValueError, match="ISO-8601"):
        log.append([{**minimal, "created_at": "last tuesday"}])
    # a bad record anywhere in a batch writes nothing of it
    with pytest.raises(ValueError):
        log.append([minimal, {**minimal, "decision": None}])
    assert len(log.read()) == 2
    with pytest.raises(ValueError, match="retention_days"):
        PredictionLog(tmp_path / "q.sqlite", retention_days=0)


def test_not_sqlite_says_what_to_do(tmp_path):
    bad = tmp_path / "p.sqlite"
    bad.write_text("this is not a database, just text that is long enough " * 40)
    with pytest.raises(ValueError, match="point the log at another path"):
        PredictionLog(bad, retention_days=None)


def test_read_by_period_and_time_zones(tmp_path):
    log = PredictionLog(tmp_path / "p.sqlite", retention_days=None)
    days = [T0 + timedelta(days=d, hours=1) for d in range(10)]
    # appended out of order, with different offsets and a Z suffix: read sorts by time
    log.append([make_record(d, days[d]) for d in (5, 3, 9)])
    log.append([make_record(d, days[d]) for d in (0, 1, 2, 4, 6, 7, 8) if d != 2])
    cet = days[2].astimezone(datetime.now().astimezone().tzinfo).isoformat()
    log.append([make_record(2, created_at=cet)])
    log.append([make_record(10, created_at=days[0].strftime("%Y-%m-%dT%H:%M:%SZ"))])
    week = log.read(since=T0, until=T0 + timedelta(days=7))
    assert [r["message_id"] for r in week] == ["m0", "m10", "m1", "m2", "m3", "m4", "m5", "m6"]
    # bounds: since inclusive, until exclusive; naive datetimes are UTC
    assert [r["message_id"] for r in log.read(since=days[9].replace(tzinfo=None))] == ["m9"]
    assert [r["message_id"] for r in log.read(until=days[1])] == ["m0", "m10"]
    assert len(log.read()) == 11


def test_retention_purge(tmp_path):
    log = PredictionLog(tmp_path / "p.sqlite", retention_days=30)
    now = T0 + timedelta(days=100)
    log.append([make_record(i, now - timedelta(days=age)) for i, age in enumerate([0, 29, 31, 99])])
    assert log.purge(now=now) == 2
    assert [r["message_id"] for r in log.read()] == ["m1", "m0"]
    assert log.purge(now=now) == 0
    keep_all = PredictionLog(tmp_path / "p.sqlite", retention_days=None)
    assert keep_all.purge(now=now + timedelta(days=1000)) == 0
    assert len(keep_all.read()) == 2


def _records(worker: int, batch: int, size: int) -> list[dict]:
    return [make_record(worker * 100_000 + batch * size + i, T0) for i in range(size)]


def _append_many(path: str, worker: int, batches: int, size: int) -> None:
    log = PredictionLog(path, retention_days=None)
    for b in range(batches):
        log.append(_records(worker, b, size))
    log.close()


def _fork_while_appending(path: str, batches: int, size: int) -> None:
    """In a fresh process (not the test process, whose other threads could hold unrelated locks
    at the fork): a thread appends as worker 8 while a fork-started child appends as worker 7
    through the parent's object, which must open its own connection there."""
    log = PredictionLog(path, retention_days=None)
    thread = threading.Thread(
        target=lambda: [log.append(_records(8, b, size)) for b in range(batches)]
    )
    thread.start()
    child = multiprocessing.get_context("fork").Process(
        target=lambda: [log.append(_records(7, b, size)) for b in range(batches)]
    )
    child.start()
    child.join(timeout=60)
    thread.join(timeout=60)
    sys.exit(child.exitcode)


def test_concurrent_appends_from_processes_and_threads(tmp_path):
    path = tmp_path / "p.sqlite"
    log = PredictionLog(path, retention_days=None)
    batches, size = 25, 4
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, batches, size)) for w in range(3)]
    procs.append(ctx.Process(target=_fork_while_appending, args=(str(path), batches, size)))
    threads = [
        threading.Thread(
            target=lambda w=w: [log.append(_records(w, b, size)) for b in range(batches)]
        )
        for w in range(3, 7)
    ]
    for worker in (*procs, *threads):
        worker.start()
    for worker in (*procs, *threads):
        worker.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    ids = [r["message_id"] for r in log.read()]
    assert len(ids) == 9 * batches * size == len(set(ids))
    expected = {
        f"m{w * 100_000 + b * size + i}"
        for w in range(9)
        for b in range(batches)
        for i in range(size)
    }
    assert set(ids) == expected


def test_writer_killed_mid_append_leaves_earlier_records(tmp_path):
    path = tmp_path / "p.sqlite"
    size = 5_000
    # a child appends big transactions in a loop and says when each one is committed
    script = textwrap.dedent(
        f"""
        import sys
        from triage.serving.predlog import PredictionLog
        log = PredictionLog({str(path)!r}, retention_days=None)
        text = "x" * 400
        for b in range(1000):
            log.append([
                {{"message_id": f"b{{b}}-{{i}}", "created_at": "2026-11-16T09:00:00+00:00",
                  "text": text, "text_masked": False, "decision": "review"}}
                for i in range({size})
            ])
            print(b, flush=True)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    committed = int(child.stdout.readline())  # at least one batch is in
    committed = int(child.stdout.readline())
    time.sleep(0.05)  # well inside the next append
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    log = PredictionLog(path, retention_days=None)
    records = log.read()
    # whole transactions only, at least every batch that was reported committed
    assert len(records) % size == 0 and len(records) >= (committed + 1) * size
    assert {r["message_id"] for r in records} >= {f"b{committed}-{i}" for i in range(size)}
    check = sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0]
    assert check == "ok"
    log.append([make_record(1)])  # and it is writable
    assert len(log.read()) == len(records) + 1
