"""The audit report and the feedback export on a synthetic week with a known truth: estimates
that cover the truth, kappa, calibration, drift, the verdict, MLflow, and a feedback file that
holds back conflicts and that the data layer reads."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from tests.audit.support import INTENTS, audit_overrides, synthetic_log
from triage.audit import feedback as auditexport
from triage.audit import report as auditreport
from triage.audit import sample as auditsample
from triage.audit.report.render import render_html, render_markdown
from triage.audit.report.sections import Section
from triage.audit.stats import kappa, verdict
from triage.audit.store import AuditDB
from triage.config import load_config, to_container
from triage.data.build import build_dataset
from triage.serving.predlog import PredictionLog


@pytest.fixture(scope="module")
def reviewed(root, tmp_path_factory, module_db_url):
    """A sampled, fully reviewed batch: alice labels every item with its true intent, bob
    labels the doubly reviewed ones and disagrees on every fourth."""
    tmp = tmp_path_factory.mktemp("audit-report")
    records, truth = synthetic_log(1500, seed=21)
    plog = PredictionLog(tmp / "predictions.sqlite", retention_days=None)
    plog.append(records)
    plog.close()
    rng = np.random.default_rng(0)
    pd.DataFrame(
        {
            "intent": rng.choice(INTENTS, size=400, p=[0.3, 0.2, 0.1, 0.05, 0.25, 0.1]),
            "lang": rng.choice(["nl", "en"], size=400),
        }
    ).to_parquet(tmp / "train.parquet")
    pd.DataFrame(
        {
            "intent_confidence": rng.beta(6, 1.5, size=300),
            "novelty": np.linspace(0.0, 0.3, 300),
            "novelty_threshold": 0.25,
        }
    ).to_parquet(tmp / "test.parquet")
    cfg = load_config(
        [
            *audit_overrides(tmp, module_db_url),
            "audit.sample.since=2026-11-16",
            "audit.sample.size=150",
            f"audit.report.train_data={tmp}/train.parquet",
            f"audit.report.reference_predictions={tmp}/test.parquet",
        ],
        root=root,
    )
    batch_id = auditsample.run(cfg)
    db = AuditDB(cfg.audit.db_url)
    db.add_reviewer("alice")
    db.add_reviewer("bob")
    alice, bob = db.reviewer_named("alice"), db.reviewer_named("bob")
    dual = 0
    for item in db.items(batch_id):
        true = truth[item["message_id"]]
        db.add_review(item["id"], alice, true, item["sentiment"])
        if item["reviews_required"] == 2:
            dual += 1
            other = INTENTS[(INTENTS.index(true) + 1) % len(INTENTS)]
            db.add_review(item["id"], bob, other if dual % 4 == 0 else true, item["sentiment"])
    db.close()
    return cfg, tmp, records, truth, batch_id


@pytest.mark.slow
def test_report_numbers_cover_the_truth(reviewed):
    cfg, tmp, records, truth, batch_id = reviewed
    out = auditreport.run(cfg)
    assert out == Path(tmp) / "reports" / batch_id
    metrics = json.loads((out / "metrics.json").read_text())
    db = AuditDB(cfg.audit.db_url)
    items = db.items(batch_id)
    db.close()
    # the report's numbers are the design's estimators on the reviewed items (alice's labels
    # are the truth here)...
    hits = np.array([i["intent"] == truth[i["message_id"]] for i in items])
    weights = np.array([1 / i["inclusion_prob"] for i in items])
    control = np.array([i["in_control"] for i in items])
    acc = metrics["accuracy"]["intent"]
    assert acc["weighted"]["estimate"] == pytest.approx((weights * hits).sum() / weights.sum())
    assert acc["control"]["estimate"] == pytest.approx(hits[control].mean())
    assert acc["weighted"]["n"] == len(items) > acc["control"]["n"] == control.sum()
    # ...and near the population's truth (unbiasedness itself: test_audit_sampling)
    true_accuracy = np.mean([r["intent"] == truth[r["message_id"]] for r in records])
    for kind in ("control", "weighted"):
        assert abs(acc[kind]["estimate"] - true_accuracy) < 0.12
        assert acc[kind]["lower"] < acc[kind]["estimate"] < acc[kind]["upper"]
    # sentiment was accepted everywhere: accuracy 1
    assert metrics["accuracy"]["sentiment"]["weighted"]["estimate"] == 1.0
    auto = [r for r in records if r["decision"] == "auto"]
    true_fpr = np.mean([r["intent"] != truth[r["message_id"]] for r in auto])
    fpr = metrics["fpr_by_class"]["all"]["weighted"]
    assert abs(fpr["estimate"] - true_fpr) < 0.1 and fpr["lower"] <= fpr["estimate"] <= fpr["upper"]
    assert set(metrics["fpr_by_action"]) <= {"all", "auto_reply", "support_queue", "hide"}
    assert "estimate" in metrics["moderation_precision"]["weighted"]
    # kappa between alice and bob on the doubly reviewed items, as scikit-learn computes it
    db = AuditDB(cfg.audit.db_url)
    pairs = [lab.current for lab in db.labels(batch_id).values() if len(lab.current) == 2]
    db.close()
    expected = kappa([p[0][2] for p in pairs], [p[1][2] for p in pairs])
    assert metrics["agreement"]["intent"]["estimate"] == pytest.approx(expected)
    assert metrics["agreement"]["items"] == len(pairs) > 0
    assert 0 <= metrics["calibration"]["intent"]["ece"]["estimate"] <= 1
    drift = metrics["drift"]
    assert set(drift) == {
        "intent_mix",
        "sentiment_mix",
        "language_mix",
        "confidence",
        "novelty",
    } - {"sentiment_mix"} | ({"sentiment_mix"} if "sentiment_mix" in drift else set())
    assert drift["intent_mix"]["psi_predicted"] >= 0 and drift["confidence"]["ks"] > 0
    # novelty: the period's messages reach further from the training data than the test split's
    novel = drift["novelty"]
    assert novel["threshold"] == 0.25 and novel["n_period"] == len(records)
    assert novel["far_share_reference"] == pytest.approx((np.linspace(0, 0.3, 300) >= 0.25).mean())
    assert novel["far_share_period"] == pytest.approx(
        np.mean([r["novelty"] >= 0.25 for r in records])
    )
    assert novel["psi"] > 0.1 and sum(novel["period"]) == pytest.approx(1.0)
    judgement = metrics["judgement"]
    assert judgement["verdict"] in ("PASS", "FAIL", "INCONCLUSIVE")
    check = next(c for c in judgement["checks"] if c["target"] == "intent accuracy")
    assert check["status"] == verdict(acc["weighted"], 0.85, "min")[0]
    statuses = {c["status"] for c in judgement["checks"]}
    assert (
        judgement["verdict"] == "FAIL" if "not met" in statuses else judgement["verdict"] != "FAIL"
    )
    # the synthetic automated decisions are wrong far more often than 5% for some class
    assert judgement["verdict"] == "FAIL"
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    assert "Verdict: FAIL" in html and "Verdict: FAIL" in md
    assert "<script" not in html
    assert (out / "plots" / "intent_reliability.png").is_file()
    assert (out / "plots" / "automated_fpr.png").is_file()
    assert (out / "plots" / "drift_intent_mix.png").is_file()
    assert (out / "plots" / "drift_novelty.png").is_file()
    assert "far out (sent to review), period" in md
    # logged to MLflow: one run tagged with the batch, the numbers and the files
    client = mlflow.MlflowClient(cfg.tracking.uri)
    runs = client.search_runs(
        [client.get_experiment_by_name(cfg.tracking.experiment).experiment_id],
        f"tags.audit_batch = '{batch_id}'",
    )
    assert len(runs) == 1
    run = runs[0]
    assert run.data.metrics["audit/intent/accuracy/weighted"] == pytest.approx(
        acc["weighted"]["estimate"]
    )
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "audit")}
    assert {"audit/report.html", "audit/report.md", "audit/metrics.json"} <= artifacts


@pytest.mark.slow
def test_export_holds_back_conflicts_and_prepare_reads_it(reviewed, root):
    cfg, tmp, _, truth, batch_id = reviewed
    path = auditexport.run(cfg)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    db = AuditDB(cfg.audit.db_url)
    labels = db.labels(batch_id)
    items = {i["id"]: i for i in db.items(batch_id)}
    db.close()
    conflicts = {items[k]["message_id"] for k, lab in labels.items() if lab.state == "conflict"}
    exported = {r["id"].removeprefix("feedback-") for r in rows}
    assert conflicts and not conflicts & exported
    assert len(exported) == len(rows) == len(items) - len(conflicts)
    assert all(r["intent"] == truth[r["id"].removeprefix("feedback-")] for r in rows)
    assert all(r["source"] == "feedback" and r["batch"] == batch_id for r in rows)
    corrected = [r for r in rows if r["status"] == "corrected"]
    assert corrected and all(r["reviewers"] for r in rows)
    import yaml

    manifest = yaml.safe_load((path.parent / "manifest.yaml").read_text())
    entry = manifest["batches"][batch_id]
    assert entry["rows"] == len(rows) and entry["held_back"] == {"conflict": len(conflicts)}
    # a second batch file with the same messages: they are not exported twice
    twin = path.parent / "another-batch.jsonl"
    twin.write_text(path.read_text())
    again = auditexport.run(cfg)
    assert not again.exists()  # nothing new: no (empty) file for the data layer to refuse
    twin.unlink()
    auditexport.run(cfg)  # restore

    # the data layer reads the folder as the feedback source (config authored); missing or empty
    # folders are skipped
    data = to_container(load_config([f"data.sources.feedback.path={path.parent}"], root=root).data)
    data["sources"] = {"feedback": data["sources"]["feedback"]}
    frame, _, report = build_dataset(data, root, root)
    assert len(frame) == len(rows)  # all distinct texts
    assert set(frame["source"]) == {"feedback"}
    got = frame.set_index("id").loc[rows[0]["id"]]
    assert (got["intent"], got["sentiment"]) == (rows[0]["intent"], rows[0]["sentiment"])
    data["sources"]["feedback"]["path"] = str(tmp / "nothing-here")
    data["sources"]["authored"] = to_container(load_config([], root=root).data)["sources"][
        "authored"
    ]
    frame, _, report = build_dataset(data, root, root)
    assert "feedback" not in report["read_per_source"] and len(frame) > 1000


@pytest.mark.slow
def test_export_versions_the_file_with_dvc(tmp_path):
    """In a DVC project, the exported file gets its .dvc file (to commit) and DVC's cache."""
    import subprocess
    import sys

    project = tmp_path / "project"
    (project / "data" / "feedback").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True)
    path = project / "data" / "feedback" / "b1.jsonl"
    path.write_text('{"id": "feedback-m1", "text": "hoi", "intent": "other"}\n')
    assert auditexport.dvc_add(path, project)
    dvc_file = path.with_name("b1.jsonl.dvc")
    assert dvc_file.is_file() and "md5" in dvc_file.read_text()
    assert "/b1.jsonl" in (path.parent / ".gitignore").read_text()
    # outside a DVC project it says so and leaves the file alone
    assert not auditexport.dvc_add(path, tmp_path)


def test_rendering_keeps_every_value_and_escapes_the_page():
    parts = [
        Section(
            "Batch <b>w47</b>",
            ["a message said <script>alert(1)</script> & more"],
            tables=[(["comparison", "value", "n"], [["a|b", 0.1, 3], ["none yet", math.nan, 0]])],
            images=["plots/drift_intent_mix.png"],
        )
    ]
    md = render_markdown("Audit report: w47", parts)
    assert md.startswith("# Audit report: w47\n") and "## Batch <b>w47</b>" in md
    rows = [line for line in md.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]
    # header, separator, then the rows: floats with three decimals, NaN as n/a, | escaped
    assert cells[0] == ["comparison", "value", "n"]
    assert cells[2:] == [["a\\|b", "0.100", "3"], ["none yet", "n/a", "0"]]
    assert "![plots/drift_intent_mix.png](plots/drift_intent_mix.png)" in md
    html = render_html("Audit report: w47", parts)
    assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert "<h2>Batch &lt;b&gt;w47&lt;/b&gt;</h2>" in html
    assert "<tr><td>a|b</td><td>0.100</td><td>3</td></tr>" in html
    assert "<td>none yet</td><td>n/a</td><td>0</td>" in html
    assert "<img src='plots/drift_intent_mix.png'" in html
