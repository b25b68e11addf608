"""Champion and challenger: the shadow model scores every message after the answer and is logged
with the same message id; a canary share is decided by the challenger (stable per message id); a
broken shadow bundle never fails an answer."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from tests.serving.test_api import serve_config, wait_ready
from triage.errors import ConfigError
from triage.serving.api import create_app
from triage.serving.predlog import PredictionLog

MESSAGES = [
    {"id": f"m{i}", "text": text}
    for i, text in enumerate(
        ["Waar blijft mijn pakket?", "Top service!", "Where is my refund?", "Ik wil annuleren"]
    )
]


def logged(path, n: int, timeout: float = 30.0) -> list[dict]:
    """The log's records, shadow ones included, once there are at least ``n``."""
    deadline = time.monotonic() + timeout
    while True:
        records = PredictionLog(path, retention_days=None).read(shadow=True)
        if len(records) >= n or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def wait_challenger(client, field: str, timeout: float = 30.0) -> None:
    """Until ``/v1/model`` shows the challenger's ``model_version`` (loaded) or ``error``."""
    deadline = time.monotonic() + timeout
    while client.get("/v1/model").json()["challenger"][field] is None:
        assert time.monotonic() < deadline, f"no challenger {field} after {timeout} s"
        time.sleep(0.05)


def serve(root, bundle, tmp_path, *overrides):
    log_path = tmp_path / "predictions.sqlite"
    scfg = serve_config(root, bundle, log_path, f"serve.shadow_bundle={bundle}", *overrides)
    return create_app(scfg), log_path


def test_shadow_scores_every_message_after_the_answer_with_the_same_id(root, bundle, tmp_path):
    app, log_path = serve(root, bundle, tmp_path)
    with TestClient(app) as client:
        wait_ready(client)
        wait_challenger(client, "model_version")
        answer = client.post("/v1/classify", json={"messages": MESSAGES})
        assert answer.status_code == 200
        records = logged(log_path, 2 * len(MESSAGES))
        metrics = client.get("/metrics").text
    decided = [r for r in records if r["rollout"]["arm"] == "champion"]
    shadow = [r for r in records if r["rollout"]["arm"] == "shadow"]
    assert [r["message_id"] for r in decided] == [m["id"] for m in MESSAGES]
    assert sorted(r["message_id"] for r in shadow) == sorted(m["id"] for m in MESSAGES)
    # the same bundle in both roles: the shadow's predictions equal the answers
    by_id = {r["message_id"]: r for r in shadow}
    for p in answer.json()["predictions"]:
        assert by_id[p["message_id"]]["intent"] == p["intent"]
        assert by_id[p["message_id"]]["model_version"] == p["model_version"]
    assert 'triage_shadow_messages_total{outcome="scored"} 4.0' in metrics
    # the audit reads only what decided
    assert len(PredictionLog(log_path, retention_days=None).read()) == len(MESSAGES)


def test_a_canary_share_is_decided_by_the_challenger_stably_per_message(root, bundle, tmp_path):
    app, log_path = serve(root, bundle, tmp_path, "serve.canary_share=0.5")
    many = [{"id": f"c{i}", "text": f"Waar blijft bestelling {i}?"} for i in range(4)]
    with TestClient(app) as client:
        wait_ready(client)
        wait_challenger(client, "model_version")
        for _ in range(2):  # a retry of the same ids lands on the same arms
            assert client.post("/v1/classify", json={"messages": many}).status_code == 200
        records = logged(log_path, 16)
    arms = {}
    for r in records:
        if r["rollout"]["arm"] != "shadow":
            arms.setdefault(r["message_id"], set()).add(r["rollout"]["arm"])
    assert all(len(a) == 1 for a in arms.values()), arms
    assert {a for s in arms.values() for a in s} == {"champion", "challenger"}
    assert sum(r["rollout"]["arm"] == "shadow" for r in records) == 8


def test_a_broken_shadow_bundle_fails_no_answer(root, bundle, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not a manifest", encoding="utf-8")
    log_path = tmp_path / "predictions.sqlite"
    scfg = serve_config(
        root, bundle, log_path, f"serve.shadow_bundle={broken}", "serve.canary_share=0.5"
    )
    with TestClient(create_app(scfg)) as client:
        wait_ready(client)
        wait_challenger(client, "error")
        answers = [client.post("/v1/classify", json={"messages": MESSAGES}) for _ in range(5)]
        info = client.get("/v1/model").json()["challenger"]
    assert [a.status_code for a in answers] == [200] * 5
    assert info["model_version"] is None and info["canary_share"] == 0.0
    records = PredictionLog(log_path, retention_days=None).read(shadow=True)
    assert len(records) == 20 and {r["rollout"]["arm"] for r in records} == {"champion"}


def test_a_canary_needs_a_challenger(root, bundle, tmp_path):
    scfg = serve_config(root, bundle, tmp_path / "log.sqlite", "serve.canary_share=0.2")
    with pytest.raises(ConfigError, match=r"serve\.shadow_bundle"):
        create_app(scfg)
