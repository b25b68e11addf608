"""The prediction log and the rollout state in a shared database (SQLite through SQLAlchemy, and
PostgreSQL when configured): the same records and rules as the file log, one state for every
replica, and two service processes writing one log that one audit batch samples."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.audit.support import DB_BACKENDS, audit_overrides, free_port, fresh_db_url
from triage.audit.store import AuditDB
from triage.cli import main
from triage.serving.predlog import PredictionLog
from triage.serving.rollout import RolloutState
from triage.serving.shared import (
    STATE_STALENESS_S,
    RolloutTable,
    SqlPredictionLog,
    open_prediction_log,
)


@pytest.fixture(params=DB_BACKENDS)
def url(request, tmp_path):
    yield from fresh_db_url(request.param, tmp_path)


def record(i: int, text: str = "waar blijft mijn pakket", **more) -> dict:
    return {
        "message_id": f"m{i}",
        "created_at": (datetime(2026, 12, 1, tzinfo=UTC) + timedelta(hours=i)).isoformat(),
        "text": text,
        "text_masked": True,
        "lang": "nl",
        "intent": "order_status",
        "intent_prob": 0.9,
        "intent_probs": {"order_status": 0.9, "other": 0.1},
        "decision": "auto",
        "rollout": {"automation": True, "pilot": None, "arm": "champion"},
        **more,
    }


def test_a_database_log_keeps_what_the_file_log_keeps(url, tmp_path):
    records = [
        record(0),
        record(1, text="nul \x00 and \ud800 here"),
        record(2, rollout={"automation": True, "pilot": None, "arm": "shadow"}),
        record(30),
    ]
    shared = open_prediction_log(url, retention_days=10)
    assert isinstance(shared, SqlPredictionLog)
    shared.append(records)
    local = PredictionLog(tmp_path / "file.sqlite", retention_days=10)
    local.append(records)
    assert shared.read() == local.read()
    assert [r["message_id"] for r in shared.read()] == ["m0", "m1", "m30"]  # no shadow
    assert len(shared.read(shadow=True)) == 4
    assert shared.read()[1]["text"] == "nul \ufffd and \ufffd here"  # the storage rule
    since = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert [r["message_id"] for r in shared.read(since=since)] == ["m30"]
    assert shared.purge(now=datetime(2026, 12, 12, tzinfo=UTC)) == 3
    assert [r["message_id"] for r in shared.read(shadow=True)] == ["m30"]
    shared.close()
    local.close()


def test_one_state_for_every_replica(url):
    default = RolloutState(pilot=("praise",))
    one, two = RolloutTable(url, default), RolloutTable(url, default)
    assert one.state == two.state == default
    written = one.write(RolloutState(automation=False, note="recall"), "ops")
    assert written.automation is False and written.changed_by == "ops"
    time.sleep(one.max_staleness_s)
    assert two.refresh() and two.state == written
    one.write(RolloutState(), "ops")
    assert two.refresh(force=True) and two.state.automation is True


def test_replicas_starting_together_all_open_the_log_and_the_state(url):
    """Four replicas create the tables at once (on PostgreSQL the losers of that race fail on the
    catalogue's unique index unless retried, and a replica without its rollout state never gets
    ready): every one opens both and sees the one state."""
    log_start, state_start, opened, errors = threading.Barrier(4), threading.Barrier(4), [], []

    def replica() -> None:
        try:
            log_start.wait()
            SqlPredictionLog(url, retention_days=None).close()
        except Exception as exc:  # collected, asserted on below
            errors.append(exc)
        try:
            state_start.wait()
            opened.append(RolloutTable(url, RolloutState(pilot=("praise",))).state)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and opened == [RolloutState(pilot=("praise",))] * 4


def test_two_replicas_write_one_log_obey_one_switch_and_one_audit_samples_both(
    root, eager_bundle, tmp_path, url, automated_texts
):
    token = "replica-admin-token"
    env = {**os.environ, "TRIAGE_ADMIN_TOKEN": token, "TRIAGE_ROOT": str(root)}
    servers, urls = [], []
    for _ in range(2):
        port = free_port()
        command = [
            sys.executable, "-m", "triage.cli", "serve", f"serve.bundle={eager_bundle}",
            f"serve.port={port}", "serve.log_level=warning",
            f"serve.prediction_log.url='{url}'", f"serve.rollout.state_url='{url}'",
        ]  # fmt: skip
        servers.append(subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True))
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for server, base in zip(servers, urls, strict=True):
            deadline, ready = time.monotonic() + 90, None
            while True:
                try:
                    ready = httpx.get(f"{base}/readyz")
                    if ready.status_code == 200:
                        break
                    assert "failed to load" not in ready.text, ready.text
                except httpx.TransportError:
                    pass
                assert server.poll() is None, server.stderr.read()
                assert time.monotonic() < deadline, None if ready is None else ready.text
                time.sleep(0.2)
        texts = automated_texts
        for k, base in enumerate(urls):
            body = {"messages": [{"id": f"r{k}-{i}", "text": t} for i, t in enumerate(texts)]}
            assert httpx.post(f"{base}/v1/classify", json=body).status_code == 200
        auth = {"Authorization": f"Bearer {token}"}
        flip = httpx.post(f"{urls[0]}/v1/admin/rollout", json={"automation": False}, headers=auth)
        assert flip.status_code == 200, flip.text
        # the contract: every replica honours a switch within STATE_STALENESS_S (replica two
        # read the state while classifying just before, maybe less than that ago)
        time.sleep(STATE_STALENESS_S)
        after = httpx.post(
            f"{urls[1]}/v1/classify", json={"messages": [{"id": "late", "text": texts[0]}]}
        )  # an automated message before the switch
        assert after.json()["predictions"][0]["decision"] == "review"
        assert httpx.get(f"{urls[1]}/v1/model").json()["rollout"]["automation"] is False
    finally:
        for server in servers:
            server.terminate()
            server.wait(20)
    overrides = [
        *audit_overrides(tmp_path),
        f"audit.prediction_log='{url}'",
        f"audit.sample.since={(datetime.now(UTC) - timedelta(days=1)).date().isoformat()}",
        "audit.sample.size=10",
    ]
    assert main(["audit-sample", *overrides]) == 0
    db = AuditDB(f"sqlite:///{tmp_path}/audit.sqlite")
    sampled = {i["message_id"] for i in db.items(db.batch()["id"])}
    db.close()
    assert {m[:2] for m in sampled} >= {"r0", "r1"}  # both replicas' messages in one batch
