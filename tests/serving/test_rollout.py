"""Rollout controls: the kill switch and the pilot list, applied to decisions, changed through the
admin endpoint or the state file, honoured by every worker, and logged with each prediction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.audit.support import free_port
from tests.serving.test_api import serve_config, wait_ready
from triage.routing import RoutingTable
from triage.serving.api import create_app
from triage.serving.predlog import PredictionLog
from triage.serving.record import Prediction
from triage.serving.rollout import RolloutFile, RolloutState, apply

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def prediction(intent: str = "order_status", decision: str = "auto") -> Prediction:
    return Prediction(
        intent=intent,
        intent_prob=0.97,
        intent_threshold=0.8,
        intent_probs={intent: 0.97},
        sentiment=None,
        sentiment_prob=None,
        sentiment_threshold=None,
        sentiment_probs=None,
        decision=decision,
        action="auto_reply",
        priority="normal",
        reason="order_status 0.97 ≥ 0.80: auto_reply, normal priority.",
        novelty=0.1,
        lang="nl",
        model_version="v1",
    )


def test_kill_switch_and_pilot_turn_automatic_decisions_into_review():
    auto, review = prediction(), prediction(decision="review")
    assert apply(RolloutState(), auto, "review") == auto
    off = apply(RolloutState(automation=False, note="recall of model X"), auto, "review")
    assert (off.decision, off.action, off.priority) == ("review", "review", "normal")
    assert off.reason.startswith("automation is switched off (recall of model X): a person")
    assert off.reason.endswith("The model would have: " + auto.reason)
    assert apply(RolloutState(automation=False), review, "review") == review
    pilot = RolloutState(pilot=("praise", "discount_code"))
    held = apply(pilot, auto, "review")
    assert held.decision == "review" and held.reason.startswith(
        "pilot: not enabled for order_status"
    )
    assert apply(pilot, replace(auto, intent="praise"), "review").decision == "auto"


def test_the_state_file_is_shared_and_a_broken_one_changes_nothing(tmp_path):
    path = tmp_path / "rollout.json"
    default = RolloutState(pilot=("praise",))
    one, two = RolloutFile(path, default), RolloutFile(path, default)  # two workers
    assert one.state == two.state == default
    written = one.write(RolloutState(automation=False, note="viral complaint"), "ops")
    assert written.changed_by == "ops" and written.changed_at
    assert two.refresh() and two.state == written and not two.refresh()
    path.write_text("{not json", encoding="utf-8")  # an operator's typo
    assert not two.refresh() and two.state.automation is False
    path.write_text(json.dumps({"automation": "yes"}), encoding="utf-8")
    assert not two.refresh() and two.state.automation is False
    path.unlink()  # no file: the bundle's defaults
    assert two.refresh() and two.state == default


def test_routing_config_carries_the_pilot_list(root):
    from triage.config import load_config, to_container

    cfg = load_config(["routing.automation.enabled=[order_status,praise]"], root=root)
    table = RoutingTable.from_dict(to_container(cfg.routing))
    assert table.automation_enabled == ("order_status", "praise")
    assert RoutingTable.from_dict(table.to_dict()) == table
    assert (
        RoutingTable.from_dict(to_container(load_config([], root=root).routing)).automation_enabled
        is None
    )


@pytest.fixture
def admin_service(root, eager_bundle, tmp_path):
    log_path = tmp_path / "predictions.sqlite"
    scfg = serve_config(
        root,
        eager_bundle,
        log_path,
        f"serve.rollout.state_file={tmp_path}/rollout.json",
        f"serve.rollout.admin_token={TOKEN}",
    )
    with TestClient(create_app(scfg)) as client:
        wait_ready(client)
        yield client, log_path


def classify(client, texts):
    response = client.post("/v1/classify", json={"messages": [{"text": t} for t in texts]})
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def test_admin_endpoint_flips_the_switch_and_the_pilot_and_every_prediction_logs_it(
    admin_service, automated_texts
):
    client, log_path = admin_service
    texts = automated_texts
    assert client.post("/v1/admin/rollout", json={"automation": False}).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.post("/v1/admin/rollout", json={}, headers=wrong).status_code == 401
    assert client.get("/v1/model").json()["rollout"]["automation"] is True
    before = classify(client, texts)
    assert any(p["decision"] == "auto" for p in before), before  # the tiny model automates some

    off = client.post(
        "/v1/admin/rollout", json={"automation": False, "note": "recall"}, headers=AUTH
    )
    assert off.status_code == 200 and off.json()["automation"] is False
    assert off.json()["changed_by"] == "admin endpoint"
    after = classify(client, texts)
    assert all(p["decision"] == "review" for p in after)
    for was, now in zip(before, after, strict=True):
        switched = now["reason"].startswith("automation is switched off (recall)")
        assert switched == (was["decision"] == "auto"), now["reason"]
    assert "triage_automation_enabled 0.0" in client.get("/metrics").text
    assert client.get("/v1/model").json()["rollout"]["note"] == "recall"

    intents = client.get("/v1/model").json()["heads"]["intent"]["labels"]
    bad = client.post("/v1/admin/rollout", json={"pilot": ["no_such_intent"]}, headers=AUTH)
    assert bad.status_code == 422 and "no_such_intent" in bad.json()["detail"]
    auto_intents = sorted({p["intent"] for p in before if p["decision"] == "auto"})
    others = [i for i in intents if i not in auto_intents]
    pilot = client.post(
        "/v1/admin/rollout", json={"automation": True, "pilot": others}, headers=AUTH
    ).json()
    assert pilot["automation"] is True and pilot["pilot"] == others and pilot["note"] == "recall"
    held = classify(client, texts)
    for was, now in zip(before, held, strict=True):
        if was["decision"] == "auto":
            assert now["decision"] == "review" and now["reason"].startswith("pilot: not enabled")
    assert "triage_automation_enabled 1.0" in client.get("/metrics").text

    logged = PredictionLog(log_path, retention_days=None).read()
    assert all(r["rollout"]["arm"] == "champion" and r["rollout"]["latency_ms"] > 0 for r in logged)
    assert [{k: r["rollout"][k] for k in ("automation", "pilot")} for r in logged] == (
        [{"automation": True, "pilot": None}] * len(texts)
        + [{"automation": False, "pilot": None}] * len(texts)
        + [{"automation": True, "pilot": others}] * len(texts)
    )


def test_admin_endpoint_is_off_without_a_token(root, bundle, tmp_path):
    scfg = serve_config(root, bundle, tmp_path / "log.sqlite", "serve.rollout.admin_token=null")
    with TestClient(create_app(scfg)) as client:
        wait_ready(client)
        refused = client.post("/v1/admin/rollout", json={"automation": False}, headers=AUTH)
        assert refused.status_code == 403 and "TRIAGE_ADMIN_TOKEN" in refused.json()["detail"]


def test_two_workers_obey_the_kill_switch_under_load(root, eager_bundle, tmp_path, automated_texts):
    """``triage serve serve.workers=2``: the switch flipped through one worker under load;
    after the acknowledgement no request gets an automatic decision, whichever worker answers."""
    port = free_port()
    env = {**os.environ, "TRIAGE_ADMIN_TOKEN": TOKEN, "TRIAGE_ROOT": str(root)}
    server = subprocess.Popen(
        [
            sys.executable, "-m", "triage.cli", "serve", f"serve.bundle={eager_bundle}",
            f"serve.port={port}", "serve.workers=2", "serve.log_level=warning",
            f"serve.prediction_log.path={tmp_path}/predictions.sqlite",
            f"serve.rollout.state_file={tmp_path}/rollout.json",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, server)
        answers: list[tuple[float, list[str]]] = []
        stop = threading.Event()

        def load() -> None:
            with httpx.Client(timeout=30) as http:
                while not stop.is_set():
                    sent = time.monotonic()
                    body = {"messages": [{"text": t} for t in automated_texts]}
                    response = http.post(f"{url}/v1/classify", json=body)
                    decisions = [p["decision"] for p in response.json()["predictions"]]
                    answers.append((sent, decisions))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        ack = httpx.post(f"{url}/v1/admin/rollout", json={"automation": False}, headers=AUTH)
        acknowledged = time.monotonic()
        assert ack.status_code == 200, ack.text
        time.sleep(2.5)
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        server.terminate()
        server.wait(20)
    before = [d for sent, d in answers if sent < acknowledged - 1.0]
    after = [d for sent, d in answers if sent > acknowledged]
    assert any("auto" in d for d in before), "the tiny model automated nothing before the switch"
    assert len(after) >= 8 and not any("auto" in d for d in after), after
    logged = PredictionLog(tmp_path / "predictions.sqlite", retention_days=None).read()
    assert {r["rollout"]["automation"] for r in logged} == {True, False}


def _wait_ready(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    ready = 0
    while ready < 6:  # several answers in a row: both workers are likely up
        try:
            ready = ready + 1 if httpx.get(f"{url}/readyz").status_code == 200 else 0
        except httpx.TransportError:
            ready = 0
        assert server.poll() is None, server.stderr.read()
        assert time.monotonic() < deadline, "the service did not become ready"
        time.sleep(0.2)
