"""Every number of the report (``metrics.json``), the verdict against the targets, and the
headline numbers for MLflow."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from triage.audit import stats as st
from triage.audit.report.drift import drift
from triage.audit.report.estimates import (
    accuracy,
    agreement,
    automated_fpr,
    calibration,
    moderation_precision,
    reviewed_frame,
)
from triage.audit.store import ItemLabel
from triage.schema import HEADS


def compute(
    batch: dict[str, Any],
    items: list[dict[str, Any]],
    labels: dict[int, ItemLabel],
    period: list[dict[str, Any]],
    train: pd.DataFrame | None,
    reference: pd.DataFrame | None,
    rcfg: dict[str, Any],
) -> dict[str, Any]:
    """Every number of the report (the JSON written as ``metrics.json``)."""
    alpha, boot = rcfg["alpha"], rcfg["bootstrap"]
    frame = reviewed_frame(items, labels)
    states = Counter(lab.state for lab in labels.values())
    metrics: dict[str, Any] = {
        "batch": batch["id"],
        "kind": batch["kind"],
        "items": len(items),
        "states": dict(states),
        "reviews_in_control": int(
            (frame["in_control"].astype(bool) & frame["true_intent"].notna()).sum()
        )
        if len(frame)
        else 0,
        "targets": rcfg["targets"],
    }
    if batch["kind"] == "label_issues":
        confirmed = frame[frame["state"].isin(["reviewed", "adjudicated"])]
        wrong = np.zeros(len(confirmed), dtype=bool)
        for head in HEADS:
            shown, true = confirmed[head], confirmed[f"true_{head}"]
            wrong |= (shown.notna() & true.notna() & (shown != true)).to_numpy()
        metrics["flagged_wrong"] = st.rate(wrong, alpha)
        return metrics
    metrics["accuracy"] = accuracy(frame, alpha)
    metrics["fpr_by_class"] = automated_fpr(frame, "intent", alpha)
    metrics["fpr_by_action"] = automated_fpr(frame, "action", alpha)
    metrics["moderation_precision"] = moderation_precision(
        frame, list(rcfg["targets"]["moderation_actions"]), alpha
    )
    metrics["agreement"] = agreement(frame, labels, boot, alpha)
    metrics["calibration"] = calibration(frame, batch["labels"], rcfg["n_bins"], boot, alpha)
    metrics["drift"] = drift(period, frame, train, reference, batch["labels"])
    metrics["judgement"] = judge(metrics, rcfg["targets"])
    return metrics


def judge(metrics: dict[str, Any], targets: dict[str, Any]) -> dict[str, Any]:
    """Each target's status and sentence, and the overall verdict."""
    checks: list[dict[str, str]] = []

    def check(
        name: str,
        est: dict[str, float] | None,
        target: float | None,
        direction: str,
        percent: bool = True,
    ) -> None:
        if target is None:
            return
        status, sentence = (
            st.verdict(est, target, direction, percent) if est else ("no data", "no reviewed items")
        )
        checks.append({"target": name, "status": status, "detail": sentence})

    for head, target in (targets.get("accuracy") or {}).items():
        check(f"{head} accuracy", metrics["accuracy"].get(head, {}).get("weighted"), target, "min")
    fpr = targets.get("auto_fpr")
    for group in ("fpr_by_class", "fpr_by_action"):
        for key, est in metrics[group].items():
            if key != "all":
                kind = "class" if group == "fpr_by_class" else "action"
                check(f"automated FPR, {kind} {key}", est["weighted"], fpr, "max")
    if metrics["moderation_precision"]:
        check(
            "moderation precision",
            metrics["moderation_precision"]["weighted"],
            targets.get("moderation_precision"),
            "min",
        )
    for head, value in metrics["agreement"].items():
        if head != "items":
            check(f"{head} kappa", value, targets.get("kappa"), "min", percent=False)
    for head, value in metrics["calibration"].items():
        check(f"{head} ECE (control slice)", value["ece"], targets.get("ece"), "max", False)
    limit = targets.get("drift_psi")
    for name, value in metrics["drift"].items():
        score = value.get("psi", value.get("psi_predicted"))
        if limit is not None and score is not None:
            ok = score <= limit
            checks.append(
                {
                    "target": f"drift: {name}",
                    "status": "met" if ok else "not met",
                    "detail": f"PSI {score:.3f} against {limit}",
                }
            )
    statuses = Counter(c["status"] for c in checks)
    overall = (
        "FAIL"
        if statuses["not met"]
        else ("PASS" if checks and statuses["met"] == len(checks) else "INCONCLUSIVE")
    )
    return {"verdict": overall, "checks": checks, "counts": dict(statuses)}


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The headline numbers as ``audit/...`` MLflow metrics."""
    out: dict[str, float] = {"audit/items": metrics["items"]}
    for state, count in metrics["states"].items():
        out[f"audit/state/{state}"] = count
    if "flagged_wrong" in metrics:
        out["audit/label_issues/flagged_wrong"] = metrics["flagged_wrong"]["estimate"]
    for head, est in metrics.get("accuracy", {}).items():
        for kind in ("control", "weighted"):
            out[f"audit/{head}/accuracy/{kind}"] = est[kind]["estimate"]
    for group in ("fpr_by_class", "fpr_by_action"):
        for key, est in metrics.get(group, {}).items():
            out[f"audit/intent/{group}/{key}/weighted"] = est["weighted"]["estimate"]
            out[f"audit/intent/{group}/{key}/weighted_upper"] = est["weighted"]["upper"]
    for head, value in metrics.get("agreement", {}).items():
        if head != "items":
            out[f"audit/{head}/kappa"] = value["estimate"]
    for head, value in metrics.get("calibration", {}).items():
        out[f"audit/{head}/ece"] = value["ece"]["estimate"]
    for key, value in metrics.get("drift", {}).items():
        score = value.get("psi", value.get("psi_predicted"))
        if score is not None:
            out[f"audit/drift/{key}/psi"] = score
    if "judgement" in metrics:
        out["audit/targets_not_met"] = metrics["judgement"]["counts"].get("not met", 0)
    return {k: float(v) for k, v in out.items() if v is not None and not math.isnan(float(v))}
