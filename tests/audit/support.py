"""Helpers shared by the audit tests: a synthetic prediction log with a known truth, configs
pointing at tmp folders, the review app on a free port, and a headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

INTENTS = ["order_status", "refund_return", "spam", "abuse", "praise", "other"]
SENTIMENTS = ["negative", "neutral", "positive"]
ACTIONS = {
    "order_status": "auto_reply",
    "refund_return": "support_queue",
    "spam": "hide",
    "abuse": "moderation_review",
    "praise": "auto_reply",
    "other": "none",
}
THRESHOLDS = {
    "order_status": 0.8,
    "refund_return": 0.85,
    "spam": 0.9,
    "abuse": None,
    "praise": 0.8,
    "other": None,
}
WEEK = datetime(2026, 11, 16, tzinfo=UTC)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def synthetic_log(n: int, seed: int = 0, start: datetime = WEEK) -> tuple[list[dict], dict]:
    """``n`` prediction-log records over one week and the true intent of each message.

    The model is right more often when it is confident: the error rate depends on the
    confidence, so strata differ in accuracy and an unweighted batch mean is biased.
    """
    rng = np.random.default_rng(seed)
    records, truth = [], {}
    weights = np.array([0.35, 0.2, 0.08, 0.02, 0.25, 0.1])
    for i in range(n):
        true = INTENTS[rng.choice(len(INTENTS), p=weights)]
        p = float(rng.beta(5, 1.5))
        wrong = rng.random() > p  # calibrated-ish: right with probability p
        shown = (
            INTENTS[(INTENTS.index(true) + 1 + rng.integers(len(INTENTS) - 1)) % 6]
            if wrong
            else true
        )
        rest = (1 - p) / (len(INTENTS) - 1)
        probs = {label: (p if label == shown else rest) for label in INTENTS}
        threshold = THRESHOLDS[shown]
        auto = threshold is not None and p >= threshold
        sentiment = SENTIMENTS[rng.choice(3, p=[0.3, 0.5, 0.2])]
        message_id = f"m{i:05d}"
        truth[message_id] = true
        records.append(
            {
                "message_id": message_id,
                "created_at": (start + timedelta(seconds=int(i * 604800 / n))).isoformat(),
                "text": f"bericht {i} over {true} 📦" if i % 2 else f"message {i} about {true} 🙂",
                "text_masked": True,
                "lang": "nl" if i % 2 else "en",
                "intent": shown,
                "intent_prob": p,
                "intent_threshold": threshold,
                "intent_probs": probs,
                "sentiment": sentiment,
                "sentiment_prob": 0.7,
                "sentiment_threshold": 0.9,
                "sentiment_probs": {s: (0.7 if s == sentiment else 0.15) for s in SENTIMENTS},
                "decision": "auto" if auto else "review",
                "action": ACTIONS[shown] if auto or shown == "abuse" else "review",
                "priority": "normal",
                "reason": "synthetic",
                "novelty": (i % 50) / 100,  # 0 to 0.49, without drawing from rng
                "model_version": "synthetic-1",
                "channel": "instagram_dm",
            }
        )
    return records, truth


LABELS = {
    "intent": ["order_status", "refund_return", "spam", "abuse", "praise", "other"],
    "sentiment": ["negative", "neutral", "positive"],
}


def make_batch(db, n: int = 6, dual: int = 2, batch_id: str = "b1") -> list[dict]:
    """Store a sample batch ``batch_id`` of ``n`` synthetic items (the first ``dual`` need two
    reviewers) in ``db`` (an AuditDB); return its items."""
    records, _ = synthetic_log(n, seed=11)
    rows = [
        {
            **r,
            "message_created_at": r["created_at"],
            "stratum": "rest",
            "in_control": True,
            "inclusion_prob": 0.1,
            "reviews_required": 2 if i < dual else 1,
        }
        for i, r in enumerate(records)
    ]
    db.create_batch(
        {"id": batch_id, "kind": "sample", "design": {}, "labels": LABELS, "population": n}, rows
    )
    return db.items(batch_id)


def audit_overrides(tmp: Path, db_url: str | None = None) -> list[str]:
    """Config overrides that keep every audit file in ``tmp`` and tracking in a tmp store; the
    audit database at ``db_url`` (default: a SQLite file in ``tmp``)."""
    return [
        f"audit.db_url='{db_url or f'sqlite:///{tmp}/audit.sqlite'}'",  # quoted: the URL has '='
        f"audit.prediction_log={tmp}/predictions.sqlite",
        f"audit.report.out_dir={tmp}/reports",
        f"audit.rollout.out_dir={tmp}/reports/rollout",
        f"audit.export.out_dir={tmp}/feedback",
        f"audit.labelstudio.out_dir={tmp}/labelstudio",
        f"audit.issues.out_file={tmp}/label_issues.csv",
        f"tracking.uri=sqlite:///{tmp}/mlflow.db",
        "audit.report.bootstrap=50",
    ]


# The audit storage tests run on SQLite always and on PostgreSQL too when this names a database
# the tests may create schemas in, e.g. postgresql+psycopg://triage:triage@127.0.0.1/triage_test
# (`.ci/run` starts a local server and sets it).
POSTGRES_URL = os.environ.get("TRIAGE_TEST_POSTGRES_URL", "")
DB_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=pytest.mark.skipif(
            not POSTGRES_URL,
            reason="PostgreSQL not configured: set TRIAGE_TEST_POSTGRES_URL="
            "postgresql+psycopg://user:pass@host/db (.ci/run does)",
        ),
    ),
]


def fresh_db_url(backend: str, tmp: Path) -> Iterator[str]:
    """A URL to an empty audit database: a SQLite file in ``tmp``, or a new PostgreSQL schema
    (the URL's search_path) that is dropped, with everything in it, afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp}/audit.sqlite"
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"audit_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveApp:
    """A FastAPI app under uvicorn in a thread on a free loopback port."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveApp:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def chromium_available() -> bool:
    return Path(CHROMIUM).exists()


#: the marks of a test module that drives the review app in headless Chromium
BROWSER_MARKS = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not chromium_available(),
        reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium (CI does in .ci/run)",
    ),
]


def sign_in(page, url: str, name: str, token: str) -> None:
    """Open the app and sign in through the form (typed, Enter submits)."""
    page.goto(url)
    page.locator("#name").fill(name)
    page.locator("#token").fill(token)
    page.locator("#token").press("Enter")
    page.locator("#batch-list button").first.wait_for()


def open_batch(page, batch_id: str) -> None:
    page.locator(f"#batch-list button[data-batch='{batch_id}']").click()
    page.locator("#card:not([hidden]), #done:not([hidden])").first.wait_for()


def current_item_id(page) -> str:
    """The message id the card shows (the last part of the meta line)."""
    return page.locator("#meta").inner_text().split(" · ")[-1]


def wait_for_new_item(page, previous: str, timeout: float = 10.0) -> None:
    """Wait until the card shows another message than ``previous`` (or the batch is done)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not page.locator("#done").is_hidden():
            return
        if current_item_id(page) != previous:
            return
        time.sleep(0.02)
    status = page.locator("#status").inner_text()
    raise AssertionError(f"the card still shows {previous} after {timeout} s (status: {status!r})")
