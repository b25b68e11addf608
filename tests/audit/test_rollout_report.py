"""The rollout report: pairing the champion's and the challenger's records of a message, its
estimates on a synthetic log with known truth (unbiased over 100 audit draws), the verdict, and
the stage end to end on each backend."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tests.audit.support import audit_overrides, synthetic_log
from triage.audit import sample as auditsample
from triage.audit.rollout import judge, live_numbers, paired, reviewed_numbers
from triage.audit.store import AuditDB
from triage.cli import main
from triage.config import load_config
from triage.serving.predlog import PredictionLog


def with_challenger(records: list[dict], truth: dict, seed: int) -> tuple[list[dict], dict]:
    """The log's records as the champion's decisions (a quarter of them the challenger's, by
    arm), plus a shadow record per message from a challenger that is right 10 points more
    often; and the true accuracy of each model over the population."""
    rng = np.random.default_rng(seed)
    out, right = [], {"champion": [], "challenger": []}
    for r in records:
        true = truth[r["message_id"]]
        challenger = dict(r)
        if r["intent"] != true and rng.random() < 0.5:
            challenger["intent"] = true  # fixes half the champion's mistakes
        challenger["model_version"] = "v2"
        arm = "challenger" if rng.random() < 0.25 else "champion"
        decided, shadow = (r, challenger) if arm == "champion" else (challenger, r)
        latency = {"champion": 10.0, "challenger": 12.0}[arm]
        rollout = {"automation": True, "pilot": None, "arm": arm, "latency_ms": latency}
        out.append({**decided, "rollout": rollout})
        out.append({**shadow, "rollout": {"automation": True, "pilot": None, "arm": "shadow"}})
        right["champion"].append(r["intent"] == true)
        right["challenger"].append(challenger["intent"] == true)
    return out, {m: float(np.mean(v)) for m, v in right.items()}


def test_pairs_and_live_numbers():
    records, truth = synthetic_log(400, seed=5)
    logged, _ = with_challenger(records, truth, seed=1)
    pairs = paired(logged)
    assert len(pairs) == 400 and set(pairs["arm"]) == {"champion", "challenger"}
    assert set(pairs["challenger_version"]) == {"v2"}
    live = live_numbers(pairs)
    agree = (pairs["champion_intent"] == pairs["challenger_intent"]).mean()
    assert live["agreement"] == pytest.approx(agree) and 0.8 < agree < 1.0
    assert sum(live["arms"].values()) == 400
    assert live["latency_ms_p50"] == {"challenger": 12.0, "champion": 10.0}
    assert paired([r for r in logged if r["rollout"]["arm"] != "shadow"]).empty


@pytest.fixture(scope="module")
def cfg(root, tmp_path_factory):
    return load_config(audit_overrides(tmp_path_factory.mktemp("rollout")), root=root)


@pytest.mark.slow
def test_estimates_are_unbiased_over_audit_draws(cfg):
    records, truth = synthetic_log(2000, seed=3)
    logged, true_accuracy = with_challenger(records, truth, seed=2)
    pairs = paired(logged)
    decided = [r for r in logged if r["rollout"]["arm"] != "shadow"]
    estimates = {"champion": [], "challenger": []}
    for seed in range(100):
        rows, _ = auditsample.draw(decided, cfg.audit.sample, seed=seed)
        reviewed = {
            "message_id": [r["message_id"] for r in rows],
            "true_intent": [truth[r["message_id"]] for r in rows],  # perfect reviewers
            "weight": [1 / r["inclusion_prob"] for r in rows],
        }
        numbers = reviewed_numbers(pairs, pd.DataFrame(reviewed), alpha=0.05)
        for model in estimates:
            estimates[model].append(numbers["all"][model]["accuracy"]["estimate"])
    for model, values in estimates.items():
        assert np.mean(values) == pytest.approx(true_accuracy[model], abs=0.01), model
    assert true_accuracy["challenger"] - true_accuracy["champion"] > 0.03


def est(value: float, lower: float, upper: float) -> dict:
    return {"estimate": value, "lower": lower, "upper": upper, "n": 200.0, "n_eff": 150.0}


@pytest.mark.parametrize(
    ("wrong", "accuracy", "verdict"),
    [
        (est(0.02, 0.01, 0.04), 0.90, "promote"),
        (est(0.02, 0.01, 0.04), 0.85, "hold"),  # trails the champion (0.88) by 3 points
        (est(0.07, 0.05, 0.10), 0.90, "hold"),
        (est(0.04, 0.02, 0.07), 0.90, "not enough evidence"),  # the interval crosses 5%
    ],
)
def test_verdict(wrong, accuracy, verdict):
    reviewed = {
        "n": 200,
        "all": {
            "champion": {"accuracy": est(0.88, 0.85, 0.91), "wrong_auto": est(0.03, 0.02, 0.05)},
            "challenger": {"accuracy": est(accuracy, 0.8, 0.95), "wrong_auto": wrong},
        },
    }
    assert judge(reviewed, 0.05, 0.01, 100)["verdict"] == verdict
    assert judge({**reviewed, "n": 50}, 0.05, 0.01, 100)["verdict"] == "not enough evidence"


@pytest.mark.slow
def test_rollout_report_stage_on_a_reviewed_batch(root, tmp_path, db_url, capsys):
    records, truth = synthetic_log(600, seed=9)
    logged, _ = with_challenger(records, truth, seed=3)
    plog = PredictionLog(tmp_path / "predictions.sqlite", retention_days=None)
    plog.append(logged)
    plog.close()
    overrides = [
        *audit_overrides(tmp_path, db_url),
        "audit.sample.since=2026-11-16",
        "audit.sample.size=150",
        "audit.rollout.min_reviewed=50",
    ]
    assert main(["audit-sample", *overrides]) == 0
    db = AuditDB(load_config(overrides, root=root).audit.db_url)
    batch = db.batch()
    db.add_reviewer("alice")
    alice = db.reviewer_named("alice")
    for item in db.items(batch["id"]):
        db.add_review(item["id"], alice, intent=truth[item["message_id"]], sentiment=None)
    db.close()
    capsys.readouterr()
    assert main(["rollout-report", *overrides]) == 0
    printed = capsys.readouterr().out
    out = tmp_path / "reports" / "rollout" / batch["id"]
    report = (out / "report.md").read_text()
    assert "Reviewed messages" in report and "Live traffic" in report
    verdict = printed.split("verdict: ")[1].strip()
    assert verdict in ("promote", "hold", "not enough evidence")
    assert f"**{verdict}**" in report
    assert batch["id"] in (out / "report.html").read_text()
    assert json.loads((out / "metrics.json").read_text())["reviewed"]["n"] >= 50
