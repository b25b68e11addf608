"""Drift of the audited period against the training data and the test predictions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from triage import novelty
from triage.audit import stats as st
from triage.schema import HEADS

CONFIDENCE_EDGES = np.linspace(0.0, 1.0, 11)


def drift(
    period: list[dict[str, Any]],
    frame: pd.DataFrame,
    train: pd.DataFrame | None,
    reference: pd.DataFrame | None,
    labels: dict[str, list[str]],
) -> dict[str, Any]:
    """Label, language and confidence mix of the period against the training data."""
    out: dict[str, Any] = {}
    if train is not None:
        for head in HEADS:
            names = labels.get(head) or []
            if not names or head not in train:
                continue
            ref = st.shares(train[head].dropna().tolist(), names)
            predicted = st.shares([r[head] for r in period if r.get(head)], names)
            reviewed = frame[frame[f"true_{head}"].isin(names)]
            estimated = st.shares(
                reviewed[f"true_{head}"].tolist(), names, reviewed["weight"].to_numpy()
            )
            out[f"{head}_mix"] = {
                "labels": names,
                "train": ref.tolist(),
                "predicted": predicted.tolist(),
                "estimated_true": estimated.tolist() if len(reviewed) else None,
                "psi_predicted": st.psi(ref, predicted),
                "psi_estimated_true": st.psi(ref, estimated) if len(reviewed) else math.nan,
            }
        langs = sorted(set(train["lang"].dropna()) | {r["lang"] for r in period if r["lang"]})
        ref = st.shares(train["lang"].tolist(), langs)
        cur = st.shares([r["lang"] for r in period], langs)
        out["language_mix"] = {
            "languages": langs,
            "train": ref.tolist(),
            "period": cur.tolist(),
            "psi": st.psi(ref, cur),
        }
    if reference is not None and "intent_confidence" in reference:
        from scipy.stats import ks_2samp

        ref_conf = reference["intent_confidence"].to_numpy(dtype=float)
        cur_conf = np.array([r["intent_prob"] for r in period if r["intent_prob"] is not None])
        ref_h = st.histogram_shares(ref_conf, CONFIDENCE_EDGES)
        cur_h = st.histogram_shares(cur_conf, CONFIDENCE_EDGES)
        out["confidence"] = {
            "edges": CONFIDENCE_EDGES.tolist(),
            "reference": ref_h.tolist(),
            "period": cur_h.tolist(),
            "psi": st.psi(ref_h, cur_h),
            "ks": float(ks_2samp(ref_conf, cur_conf).statistic) if len(cur_conf) else math.nan,
            "mean_reference": float(ref_conf.mean()),
            "mean_period": float(cur_conf.mean()) if len(cur_conf) else math.nan,
        }
    if reference is not None and "novelty" in reference:
        out["novelty"] = novelty_drift(period, reference)
    return out


def novelty_drift(period: list[dict[str, Any]], reference: pd.DataFrame) -> dict[str, Any]:
    """The period's distance to the training data (:mod:`triage.novelty`) against the test
    split's, and the share of messages far out (sent to review for it) in each."""
    edges = np.asarray(novelty.EDGES)
    threshold = float(reference["novelty_threshold"].iloc[0])
    ref = reference["novelty"].to_numpy(dtype=float)
    cur = np.array([r["novelty"] for r in period if r.get("novelty") is not None], dtype=float)
    ref_h, cur_h = st.histogram_shares(ref, edges), st.histogram_shares(cur, edges)
    return {
        "edges": edges.tolist(),
        "reference": ref_h.tolist(),
        "period": cur_h.tolist(),
        "psi": st.psi(ref_h, cur_h),
        "threshold": threshold,
        "n_period": len(cur),
        "far_share_reference": float((ref >= threshold).mean()),
        "far_share_period": float((cur >= threshold).mean()) if len(cur) else math.nan,
    }
