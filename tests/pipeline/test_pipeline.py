"""The whole pipeline on the authored data with a tiny encoder (the `pipeline` fixture in
conftest.py): prepare, train, baseline, calibrate, evaluate, tracked in one MLflow store."""

from __future__ import annotations

import copy
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from triage.data.splits import label_ids, load_split
from triage.errors import MissingInputError
from triage.modeling.calibration import load_calibration, save_calibration, softmax
from triage.modeling.metrics import nll
from triage.modeling.model import load_checkpoint, load_predictor, predict_proba
from triage.novelty import novelty
from triage.pipeline.evaluate import run as evaluate
from triage.schema import MISSING_LABEL

TEXTS = ["Waar blijft mijn pakket?", "love this product", "cancel my order pls", "😂😂"]


def test_training_lowers_the_loss_and_tracks_the_run(pipeline):
    _cfg, tmp, client = pipeline
    run_id = (tmp / "ckpt" / "run_id").read_text().strip()
    run = client.get_run(run_id)
    losses = [m.value for m in client.get_metric_history(run_id, "train/loss")]
    assert len(losses) == 3 and losses[-1] < losses[0] * 0.9
    assert run.info.status == "FINISHED"
    assert run.data.tags["git_commit"] and run.data.tags["git_dirty"] in ("True", "False")
    assert run.data.params["train.lr"] == "0.001"
    assert len(run.data.params["data_fingerprint.train"]) == 16
    for key in (
        "val/intent/macro_f1",
        "val/sentiment/nl/macro_f1",
        "val/intent/en/accuracy",
        "val/intent/fpr/spam",
        "val/intent/fpr_max",
    ):
        assert key in run.data.metrics, key
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "data", "calibration", "evaluation"} <= artifacts
    assert (tmp / "mlartifacts").is_dir()  # beside the database, not in the working dir

    val = json.loads((tmp / "ckpt" / "val_metrics.json").read_text())
    model, tok, meta = load_checkpoint(tmp / "ckpt")
    assert meta["run_id"] == run_id and meta["epoch"] == val["epoch"]
    probs = predict_proba(model, tok, TEXTS, meta["input_prefix"], meta["max_length"])
    assert set(probs) == {"intent", "sentiment"}


def test_calibration_file(pipeline):
    _cfg, tmp, client = pipeline
    calibration = load_calibration(tmp / "calibration.json")
    assert calibration["fpr_target"] == 0.05 and calibration["split"] == "calib"
    predictor = load_predictor(tmp / "ckpt")
    calib = load_split(tmp / "data", "calib")
    logits, targets = predictor.logits(calib["text"].tolist()), label_ids(calib, predictor.labels)
    for head, labels in (("intent", 14), ("sentiment", 3)):
        fit = calibration["heads"][head]
        # the stored temperature is the NLL minimum on the labelled calib rows
        known = targets[head] != MISSING_LABEL
        z, y = logits[head][known], targets[head][known]
        t = fit["temperature"]
        for other in (t * 0.9, t * 1.1):
            assert nll(softmax(z, t), y) < nll(softmax(z, other), y)
        assert fit["after"]["nll"] <= fit["before"]["nll"] + 1e-9  # fitted to lower it
        assert set(fit["languages"]) == {"nl", "en"}
        assert len(fit["thresholds"]) == labels
        # both languages have enough calib rows for a table of their own
        assert set(fit["language_thresholds"]) == {"nl", "en"}
        for table in [fit["thresholds"], *fit["language_thresholds"].values()]:
            assert len(table) == labels
            for entry in table.values():
                assert entry["how"] in ("class", "global", "raised", "never") and entry["why"]
    run_id = (tmp / "ckpt" / "run_id").read_text().strip()
    assert "calib/intent/ece_after" in client.get_run(run_id).data.metrics
    # novelty: the training split's embeddings as the bank, the threshold at the configured
    # quantile of the calib rows' novelty
    fit = calibration["novelty"]
    bank = np.load(tmp / fit["bank"])
    assert fit["bank"] == "calibration.novelty.npy" and bank.dtype == np.float16
    assert len(bank) == fit["n_bank"] == len(load_split(tmp / "data", "train"))
    assert np.allclose(np.linalg.norm(bank.astype(np.float32), axis=1), 1.0, atol=1e-2)
    _, embeddings = predictor.outputs(calib["text"].tolist())
    scores = novelty(embeddings, bank, fit["k"])
    assert fit["threshold"] == pytest.approx(np.quantile(scores, fit["quantile"]), abs=1e-6)
    assert fit["calib_far_share"] == pytest.approx((scores >= fit["threshold"]).mean())
    assert 0 < fit["calib_far_share"] <= 1 - fit["quantile"] + 1 / len(calib)
    # the TF-IDF baseline has no embeddings, so no novelty rule
    assert "novelty" not in load_calibration(tmp / "baseline" / "calibration.json")
    assert not (tmp / "baseline" / "calibration.novelty.npy").exists()


def test_evaluation_outputs(pipeline):
    _cfg, tmp, client = pipeline
    metrics = json.loads((tmp / "evaluation" / "metrics.json").read_text())
    predictions = pd.read_parquet(tmp / "evaluation" / "predictions.parquet")
    test = pd.read_parquet(tmp / "data" / "test.parquet")
    assert predictions["id"].tolist() == test["id"].tolist()
    accuracy = (predictions["pred_intent"] == predictions["intent"]).mean()
    assert metrics["test/intent/accuracy"] == pytest.approx(accuracy)
    # each source (the two authored rounds) is scored on its own rows
    for source, rows in predictions.groupby("source"):
        assert metrics[f"test@{source}/intent/accuracy"] == pytest.approx(
            (rows["pred_intent"] == rows["intent"]).mean()
        )
    assert set(predictions["source"]) == {"authored", "authored_round2", "authored_round3"}
    auto = predictions["intent_decision"] == "auto"
    assert metrics["test/intent/coverage"] == pytest.approx(auto.mean())
    # far-out messages are never automatic; what that costs in coverage is reported
    far = predictions["novelty"] >= predictions["novelty_threshold"]
    assert metrics["test/novelty/far_share"] == pytest.approx(far.mean())
    assert not auto[far].any()
    assert metrics["test/intent/coverage_without_novelty"] >= metrics["test/intent/coverage"]
    for key in (
        "ece",
        "ece_mass",
        "mce",
        "brier",
        "nll",
        "aurc",
        "ece_uncalibrated",
        "nl/ece",
        "en/coverage",
        "auto_fpr_max",
        "auto_fpr/spam",
        "auto_fpr_upper/spam",
        "macro_f1_ci_lo",
        "macro_f1_ci_hi",
    ):
        assert f"test/intent/{key}" in metrics, key
    assert (
        metrics["test/intent/macro_f1_ci_lo"]
        <= metrics["test/intent/macro_f1"]
        <= metrics["test/intent/macro_f1_ci_hi"]
    )
    # the transformer next to the baseline
    baseline = json.loads((tmp / "baseline" / "evaluation" / "metrics.json").read_text())
    assert metrics["delta/test/intent/nl/macro_f1"] == pytest.approx(
        metrics["test/intent/nl/macro_f1"] - baseline["test/intent/nl/macro_f1"]
    )
    for name in (
        "intent_reliability.png",
        "intent_confusion.png",
        "sentiment_risk_coverage.png",
        "intent_per_language.png",
        "intent_reliability.csv",
    ):
        assert (tmp / "evaluation" / "plots" / name).stat().st_size > 0, name
    run_id = (tmp / "ckpt" / "run_id").read_text().strip()
    logged = client.get_run(run_id).data.metrics
    assert logged["test/sentiment/en/macro_f1"] == pytest.approx(
        metrics["test/sentiment/en/macro_f1"]
    )
    baseline_run = client.get_run((tmp / "baseline" / "checkpoint" / "run_id").read_text().strip())
    assert baseline_run.data.tags["model"] == "tfidf"
    assert "test/intent/macro_f1" in baseline_run.data.metrics


def test_evaluate_flags_a_class_whose_automated_decisions_break_the_target(pipeline, tmp_path):
    cfg, tmp, _ = pipeline
    calibration = load_calibration(tmp / "calibration.json")
    for fit in calibration["heads"].values():  # automate everything: the tiny model errs a lot
        fit.pop("language_thresholds")  # the pooled table for every language
        for entry in fit["thresholds"].values():
            entry["threshold"] = 0.0
    calibration["heads"]["intent"]["thresholds"]["spam"]["threshold"] = math.inf
    save_calibration(tmp_path / "calibration.json", calibration)
    cfg = copy.deepcopy(cfg)
    cfg.evaluate.calibration = str(tmp_path / "calibration.json")
    cfg.evaluate.out_dir = str(tmp_path / "evaluation")
    cfg.tracking.enabled = False
    with pytest.raises(MissingInputError, match=r"calibration\.novelty\.npy not found"):
        evaluate(cfg)  # the bank goes with its calibration file
    shutil.copy(tmp / "calibration.novelty.npy", tmp_path)
    evaluate(cfg)
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert metrics["test/intent/coverage"] < 1.0  # spam never automatic
    assert metrics["test/intent/n_auto/spam"] == 0
    broken = [
        label
        for label in calibration["heads"]["intent"]["thresholds"]
        if metrics[f"test/intent/auto_fpr/{label}"] > 0.05
    ]
    assert broken
    for label in broken:
        assert any(flag.startswith(f"intent/{label}:") for flag in metrics["flags"])
    assert not any(flag.startswith("intent/spam:") for flag in metrics["flags"])
    assert np.isfinite(metrics["test/intent/auto_fpr_upper/" + broken[0]])


def test_out_of_scope_messages_are_scored_by_abstention(pipeline, tmp_path):
    cfg, _, _ = pipeline
    cfg = copy.deepcopy(cfg)
    # treat every test message as out of scope
    cfg.data.out_of_scope_sources = ["authored", "authored_round2", "authored_round3"]
    cfg.evaluate.out_dir = str(tmp_path / "evaluation")
    cfg.evaluate.compare_with = None
    cfg.tracking.enabled = False
    evaluate(cfg)
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    predictions = pd.read_parquet(tmp_path / "evaluation" / "predictions.parquet")
    assert metrics["test/intent/oos_n"] == len(predictions)
    assert metrics["test/intent/oos_rejection"] == pytest.approx(
        (predictions["intent_decision"] == "review").mean()
    )
