"""The audit sampling design: strata, allocation, exact inclusion probabilities, reproducible
draws, and weighted estimates that are unbiased where a plain batch mean is not."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime

import numpy as np
import pytest

from tests.audit.support import WEEK, audit_overrides, synthetic_log
from triage.audit import sample as auditsample
from triage.audit.stats import weighted_rate
from triage.audit.store import AuditDB, AuditError
from triage.config import load_config
from triage.errors import ConfigError
from triage.serving.predlog import PredictionLog


@pytest.fixture(scope="module")
def cfg(root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit-sample")
    return load_config(audit_overrides(tmp), root=root)


def scfg(cfg, **changes):
    return dataclasses.replace(cfg.audit.sample, **changes)


def test_strata_follow_the_priority_order(cfg):
    base = {
        "intent": "praise",
        "intent_prob": 0.95,
        "intent_threshold": 0.8,
        "sentiment": "neutral",
        "decision": "review",
        "action": "review",
    }
    records = [
        {**base, "decision": "auto", "action": "auto_reply", "sentiment": "negative"},
        {**base, "intent_prob": 0.82},  # near its threshold 0.8
        {**base, "intent_prob": 0.3},  # low confidence
        {**base, "sentiment": "negative"},
        {**base, "intent": "abuse", "intent_threshold": None},  # 1 of 60 (< 2%): rare
    ] + [dict(base) for _ in range(55)]
    got = auditsample.assign_strata(records, cfg.audit.sample)
    assert got[:5] == [
        "automated:auto_reply",
        "near_threshold",
        "low_confidence",
        "negative",
        "rare_class",
    ]
    assert set(got[5:]) == {"rest"}
    # the order of audit.sample.strata decides: negative before automated
    swapped = scfg(cfg, strata={"negative": 0.2, "automated": 0.3})
    assert auditsample.assign_strata(records[:1], swapped) == ["negative"]
    with pytest.raises(ConfigError, match="unknown strata"):
        auditsample.assign_strata(records, scfg(cfg, strata={"typo": 0.1}))


def test_allocation_sums_to_the_size_and_keeps_the_control_slice():
    sizes = {
        "automated:auto_reply": 500,
        "automated:hide": 40,
        "near_threshold": 300,
        "negative": 3,
        "rest": 5000,
    }
    shares = {"automated": 0.3, "near_threshold": 0.15, "negative": 0.1, "rare_class": 0.1}
    n_control, targeted = auditsample.allocate(200, 0.3, shares, sizes)
    # automated split equally per action; negative capped at its 3 messages; rare_class has no
    # messages: both leftovers go to the control slice
    assert targeted == {
        "automated:auto_reply": 30,
        "automated:hide": 30,
        "near_threshold": 30,
        "negative": 3,
    }
    assert n_control == 200 - 93 and n_control >= 0.2 * 200
    with pytest.raises(ConfigError, match="at least 20%"):
        auditsample.allocate(200, 0.1, shares, sizes)
    with pytest.raises(ConfigError, match="exceed 1"):
        auditsample.allocate(200, 0.5, {"automated": 0.6}, sizes)
    # a period smaller than the batch: everything, once
    n_control, targeted = auditsample.allocate(200, 0.3, shares, {"rest": 50})
    assert (n_control, targeted) == (50, {})


def test_draw_is_reproducible_and_probabilities_are_exact(cfg):
    records, _ = synthetic_log(2000, seed=1)
    s = cfg.audit.sample
    rows, design = auditsample.draw(records, s, seed=7)
    again, _ = auditsample.draw(records, s, seed=7)
    other, _ = auditsample.draw(records, s, seed=8)
    ids = [r["message_id"] for r in rows]
    assert ids == [r["message_id"] for r in again]
    assert ids != [r["message_id"] for r in other]
    assert len(ids) == len(set(ids)) and len(ids) <= s.size
    control = [r for r in rows if r["in_control"]]
    assert len(control) == design["control"]["n"] >= 0.3 * s.size
    n = len(records)
    for r in rows:
        stratum = design["strata"][r["stratum"]]
        expected = 1 - (1 - design["control"]["n"] / n) * (1 - stratum["n"] / stratum["N"])
        assert r["inclusion_prob"] == pytest.approx(expected)
    assert design["dual_review"] == sum(r["reviews_required"] == 2 for r in rows)
    assert design["dual_review"] == round(s.dual_share * len(rows))
    # the queue does not group the strata
    strata = [r["stratum"] for r in rows]
    assert strata != sorted(strata)


def test_inclusion_probabilities_match_the_draw_frequencies(cfg):
    """Empirically: how often each message is drawn over many seeds equals its stored pi."""
    records, _ = synthetic_log(300, seed=2)
    s = scfg(cfg, size=60)
    hits, pis = Counter(), {}
    runs = 400
    for seed in range(runs):
        rows, _ = auditsample.draw(records, s, seed=seed)
        for r in rows:
            hits[r["message_id"]] += 1
            pis[r["message_id"]] = r["inclusion_prob"]
    freq = np.array([hits[m] / runs for m in pis])
    pi = np.array([pis[m] for m in pis])
    assert np.abs(freq - pi).max() < 0.1
    assert abs((freq - pi).mean()) < 0.01


def test_weighted_estimates_are_unbiased_where_the_batch_mean_is_not(cfg):
    records, truth = synthetic_log(2000, seed=3)
    true_accuracy = np.mean([r["intent"] == truth[r["message_id"]] for r in records])
    weighted, control, naive = [], [], []
    for seed in range(100):
        rows, _ = auditsample.draw(records, cfg.audit.sample, seed=seed)
        hits = np.array([r["intent"] == truth[r["message_id"]] for r in rows])
        w = np.array([1 / r["inclusion_prob"] for r in rows])
        weighted.append(weighted_rate(hits, w)["estimate"])
        control.append(hits[[r["in_control"] for r in rows]].mean())
        naive.append(hits.mean())
    # the strata oversample some kinds of messages (here the confident automated ones): a
    # plain mean over the batch is off
    assert abs(np.mean(naive) - true_accuracy) > 0.02
    assert np.mean(weighted) == pytest.approx(true_accuracy, abs=0.01)
    assert np.mean(control) == pytest.approx(true_accuracy, abs=0.01)
    # and the weighted estimate uses the whole batch: less spread than the control slice alone
    assert np.std(weighted) < np.std(control)


def test_period_rules():
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    assert auditsample.period(None, None, 7, now) == (datetime(2026, 11, 16, 12, tzinfo=UTC), now)
    start, end = auditsample.period("2026-11-16", None, 7)
    assert (start, end) == (WEEK, datetime(2026, 11, 23, tzinfo=UTC))
    assert auditsample.period(None, "2026-11-23", 7) == (start, end)
    with pytest.raises(ConfigError, match="not before"):
        auditsample.period("2026-11-23", "2026-11-16", 7)


def test_sample_stage_reads_the_period_from_the_log(root, tmp_path, db_url):
    records, _ = synthetic_log(600, seed=4)
    earlier, _ = synthetic_log(50, seed=5, start=datetime(2026, 11, 2, tzinfo=UTC))
    log = PredictionLog(tmp_path / "predictions.sqlite", retention_days=None)
    # the service may log an id twice (a retried request): the latest record counts
    retried = {**records[10], "intent": "spam", "created_at": records[11]["created_at"]}
    log.append([{**r, "message_id": "old" + r["message_id"]} for r in earlier])
    log.append(records)
    log.append([retried])
    log.close()
    cfg = load_config(
        [
            *audit_overrides(tmp_path, db_url),
            "audit.sample.since=2026-11-16",
            "audit.sample.size=80",
        ],
        root=root,
    )
    batch_id = auditsample.run(cfg)
    assert batch_id == "2026-11-16_2026-11-23"
    db = AuditDB(cfg.audit.db_url)
    batch, items = db.batch(), db.items(batch_id)
    assert batch["id"] == batch_id and batch["population"] == 600
    assert batch["labels"]["intent"] == list(records[0]["intent_probs"])
    assert batch["labels"]["sentiment"] == ["negative", "neutral", "positive"]
    assert all(not i["message_id"].startswith("old") for i in items)
    assert [i["position"] for i in items] == list(range(len(items)))
    if any(i["message_id"] == records[10]["message_id"] for i in items):
        assert (
            next(i for i in items if i["message_id"] == records[10]["message_id"])["intent"]
            == "spam"
        )
    with pytest.raises(AuditError, match="exists"):
        auditsample.run(cfg)
    empty = load_config(
        [*audit_overrides(tmp_path, db_url), "audit.sample.since=2025-01-01", "audit.batch=empty"],
        root=root,
    )
    with pytest.raises(AuditError, match="no predictions"):
        auditsample.run(empty)
    db.close()
