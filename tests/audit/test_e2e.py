"""The weekly audit end to end on the tiny bundle: serve it and send it a few hundred messages,
sample a batch from the prediction log, review it in headless Chromium (two reviewers, the
keyboard only), write the report, export the corrections and find them in the next prepare."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
from fastapi.testclient import TestClient

from tests.audit.support import (
    BROWSER_MARKS,
    CHROMIUM,
    CHROMIUM_ARGS,
    LiveApp,
    audit_overrides,
    current_item_id,
    open_batch,
    sign_in,
    wait_for_new_item,
)
from triage.audit.store import AuditDB
from triage.audit.web.app import create_app as create_audit_app
from triage.cli import main
from triage.config import load_config
from triage.pipeline.prepare import run as prepare
from triage.schema import SPLITS
from triage.serving.api import create_app as create_service

pytestmark = BROWSER_MARKS
MESSAGES = 240


def authored_messages(root: Path) -> list[dict]:
    """Every authored message (the truth for the reviewers), in a fixed mixed order."""
    rows = [
        json.loads(line)
        for path in sorted((root / "data" / "authored").glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    return rows[::7][:MESSAGES]


def send(client: TestClient, messages: list[dict]) -> None:
    deadline = time.monotonic() + 60
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the bundle did not load"
        time.sleep(0.05)
    for start in range(0, len(messages), 32):
        chunk = messages[start : start + 32]
        body = {
            "messages": [
                {"id": m["id"], "text": m["text"], "channel": m.get("channel")} for m in chunk
            ]
        }
        response = client.post("/v1/classify", json=body)
        assert response.status_code == 200, response.text
        assert "X-Prediction-Log" not in response.headers


def review(page, truth: dict[str, dict], model: dict[str, dict], labels: dict) -> int:
    """Review the queue with the keyboard, labelling each message with its authored labels;
    return how many were corrected."""
    corrected = 0
    while page.locator("#done").is_hidden():
        message_id = current_item_id(page)
        true, shown = truth[message_id], model[message_id]
        changed = False
        if true["intent"] != shown["intent"]:
            page.keyboard.press("i")
            page.keyboard.type(true["intent"])
            page.keyboard.press("Enter")
            changed = True
        if true.get("sentiment") and true["sentiment"] != shown["sentiment"]:
            page.keyboard.press(str(labels["sentiment"].index(true["sentiment"]) + 1))
            changed = True
        if changed:
            assert page.locator("#save").inner_text().endswith("Save correction")
        corrected += changed
        page.keyboard.press("a")
        wait_for_new_item(page, message_id)
    return corrected


def test_weekly_audit_end_to_end(root, bundle, pipeline, tmp_path, capsys, db_url):
    from playwright.sync_api import sync_playwright

    pipeline_cfg, pipeline_tmp, _ = pipeline
    messages = authored_messages(root)
    truth = {m["id"]: m for m in messages}
    overrides = [
        *audit_overrides(tmp_path, db_url),
        "audit.sample.size=24",
        "audit.sample.dual_share=0.25",
        "audit.export.dvc_add=false",
        f"audit.report.train_data={pipeline_tmp}/data/train.parquet",
        f"audit.report.reference_predictions={pipeline_tmp}/evaluation/predictions.parquet",
    ]

    # 1. serve the bundle and send it messages: the service writes the prediction log
    serve_cfg = load_config(
        [f"serve.bundle={bundle}", f"serve.prediction_log.path={tmp_path}/predictions.sqlite"],
        root=root,
    )
    with TestClient(create_service(serve_cfg.serve)) as client:
        send(client, messages)

    # 2. sample this week's batch; add two reviewers (tokens printed once)
    assert main(["audit-sample", *overrides]) == 0
    tokens = {}
    for name in ("alice", "bob"):
        assert main(["audit-reviewer", f"audit.reviewer.name={name}", *overrides]) == 0
        tokens[name] = capsys.readouterr().out.strip().splitlines()[-1]
    db = AuditDB(db_url)
    batch = db.batch()
    items = db.items(batch["id"])
    assert 18 <= len(items) <= 24 and batch["population"] == MESSAGES
    model = {i["message_id"]: i for i in items}
    dual = {i["message_id"] for i in items if i["reviews_required"] == 2}
    assert dual

    # 3. review in the browser: alice labels everything as authored, bob accepts the model
    with LiveApp(create_audit_app(db)) as live, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        alice = browser.new_context().new_page()
        sign_in(alice, live.url, "alice", tokens["alice"])
        open_batch(alice, batch["id"])
        corrected = review(alice, truth, model, batch["labels"])
        bob = browser.new_context().new_page()
        sign_in(bob, live.url, "bob", tokens["bob"])
        open_batch(bob, batch["id"])
        seen_by_bob = set()
        while bob.locator("#done").is_hidden():
            shown = current_item_id(bob)  # read before the key: the next card may come fast
            seen_by_bob.add(shown)
            bob.keyboard.press("a")
            wait_for_new_item(bob, shown)
        progress = bob.locator("#progress-text").inner_text()
        browser.close()
    assert corrected > 0  # the tiny model is often wrong
    assert seen_by_bob == dual
    states = db.labels(batch["id"])
    conflicts = {i["message_id"] for i in items if states[i["id"]].state == "conflict"}
    assert conflicts == {
        m
        for m in dual
        if (truth[m]["intent"], truth[m].get("sentiment"))
        != (model[m]["intent"], model[m]["sentiment"])
    }
    # done: every item but the conflicts (they wait for an adjudicator)
    assert progress.startswith(f"{len(items) - len(conflicts)}/{len(items)} done")
    db.close()

    # 4. the report: estimates, agreement, calibration, drift and a verdict, in MLflow too
    assert main(["audit-report", *overrides]) == 0
    out = tmp_path / "reports" / batch["id"]
    metrics = json.loads((out / "metrics.json").read_text())
    truly_right = sum(truth[m]["intent"] == model[m]["intent"] for m in model) / len(model)
    assert metrics["accuracy"]["intent"]["weighted"]["n"] == len(items)
    assert metrics["agreement"]["items"] == len(dual)
    assert metrics["judgement"]["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE")
    assert {"intent_mix", "language_mix", "confidence"} <= set(metrics["drift"])
    assert (out / "report.html").is_file() and (out / "report.md").is_file()
    assert 0 <= truly_right <= 1

    # 5. export the corrections: conflicts are held back
    assert main(["audit-export", *overrides]) == 0
    exported = [
        json.loads(line)
        for line in (tmp_path / "feedback" / f"{batch['id']}.jsonl").read_text().splitlines()
    ]
    ids = {r["id"].removeprefix("feedback-") for r in exported}
    assert ids == set(model) - conflicts
    assert all(r["intent"] == truth[r["id"].removeprefix("feedback-")]["intent"] for r in exported)

    # 6. the next prepare reads them as the feedback source
    cfg = load_config(
        [
            f"data.out_dir={tmp_path}/prepared",
            f"data.sources.feedback.path={tmp_path}/feedback",
        ],
        root=root,
    )
    prepare(cfg)
    prepared = pd.concat(pd.read_parquet(tmp_path / "prepared" / f"{s}.parquet") for s in SPLITS)
    feedback = prepared[prepared["source"] == "feedback"].set_index("id")
    assert set(feedback.index) == {r["id"] for r in exported}
    for row in exported:
        assert feedback.loc[row["id"], "intent"] == row["intent"]
    report = json.loads((tmp_path / "prepared" / "report.json").read_text())
    assert report["read_per_source"]["feedback"] == len(exported)
    assert pipeline_cfg.data.name == "authored"
