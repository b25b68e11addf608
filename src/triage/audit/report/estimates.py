"""The report's estimates from a reviewed sample: accuracy, automated false-positive rates,
moderation precision, agreement between reviewers and calibration (control slice and weighted;
see :mod:`triage.audit.stats`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from triage.audit import stats as st
from triage.audit.store import ItemLabel
from triage.modeling.metrics import bootstrap_ci, ece, reliability_bins
from triage.schema import HEADS


def reviewed_frame(items: list[dict[str, Any]], labels: dict[int, ItemLabel]) -> pd.DataFrame:
    """One row per item with the model's values, the design and the reviewers' label
    (``true_intent``/``true_sentiment``, None where unreviewed or unclear) and ``weight``."""
    rows = []
    for item in items:
        lab = labels[item["id"]]
        rows.append(
            {
                **item,
                "state": lab.state,
                "true_intent": lab.intent,
                "true_sentiment": lab.sentiment,
                "weight": 1.0 / item["inclusion_prob"] if item["inclusion_prob"] else math.nan,
            }
        )
    return pd.DataFrame(rows)


def estimate(frame: pd.DataFrame, hits: pd.Series, alpha: float) -> dict[str, dict[str, float]]:
    """Control and weighted estimates of the share of ``hits`` over ``frame``'s rows."""
    control = frame["in_control"].astype(bool).to_numpy()
    return {
        "control": st.rate(hits.to_numpy()[control], alpha),
        "weighted": st.weighted_rate(hits.to_numpy(), frame["weight"].to_numpy(), alpha),
    }


def accuracy(frame: pd.DataFrame, alpha: float) -> dict[str, dict[str, Any]]:
    """Per head, the share of reviewed items whose model label the reviewer kept."""
    out = {}
    for head in HEADS:
        known = frame[frame[f"true_{head}"].notna() & frame[head].notna()]
        if len(known):
            out[head] = estimate(known, known[head] == known[f"true_{head}"], alpha)
    return out


def automated_fpr(frame: pd.DataFrame, by: str, alpha: float) -> dict[str, dict[str, Any]]:
    """FPR of the automated decisions (reviewer's intent != model's) per value of ``by``."""
    auto = frame[(frame["decision"] == "auto") & frame["true_intent"].notna()]
    out = {"all": estimate(auto, auto["intent"] != auto["true_intent"], alpha)} if len(auto) else {}
    for value, group in auto.groupby(by, sort=True):
        out[str(value)] = estimate(group, group["intent"] != group["true_intent"], alpha)
    return out


def moderation_precision(
    frame: pd.DataFrame, actions: list[str], alpha: float
) -> dict[str, dict[str, Any]]:
    """Share of the messages routed to a moderation action whose intent the reviewer confirms
    (automated or not)."""
    moderated = frame[frame["action"].isin(actions) & frame["true_intent"].notna()]
    if not len(moderated):
        return {}
    return estimate(moderated, moderated["intent"] == moderated["true_intent"], alpha)


def agreement(frame: pd.DataFrame, labels: dict[int, ItemLabel], boot: int, alpha: float):
    """Cohen's kappa per head between the first two reviewers of each doubly reviewed item
    (items that either called unclear are left out), with a bootstrap interval."""
    out: dict[str, Any] = {}
    pairs = [
        lab.current[:2]
        for lab in labels.values()
        if len(lab.current) >= 2 and "unclear" not in (lab.current[0][1], lab.current[1][1])
    ]
    out["items"] = len(pairs)
    for k, head in enumerate(HEADS):
        a = [p[0][2 + k] for p in pairs if p[0][2 + k] is not None and p[1][2 + k] is not None]
        b = [p[1][2 + k] for p in pairs if p[0][2 + k] is not None and p[1][2 + k] is not None]
        if not a:
            continue
        codes = {label: i for i, label in enumerate(sorted(set(a) | set(b)))}
        x, y = np.array([codes[v] for v in a]), np.array([codes[v] for v in b])
        if len(a) >= 2:
            value, lower, upper = bootstrap_ci(st.kappa, x, y, n_boot=boot, alpha=alpha)
        else:
            value = lower = upper = st.kappa(a, b)
        out[head] = {
            "estimate": value,
            "lower": lower,
            "upper": upper,
            "n": float(len(a)),
            "agreement": float(np.mean(x == y)),
        }
    return out


def calibration(
    frame: pd.DataFrame, labels: dict[str, list[str]], n_bins: int, boot: int, alpha: float
) -> dict[str, Any]:
    """ECE and reliability bins of each head's confidence against the reviewers' labels, on the
    control slice (a simple random sample of the period)."""
    out = {}
    control = frame[frame["in_control"].astype(bool)]
    for head in HEADS:
        names = labels.get(head) or []
        rows = control[control[f"true_{head}"].isin(names) & control[f"{head}_probs"].notna()]
        if not len(rows):
            continue
        probs = np.array([[p.get(name, 0.0) for name in names] for p in rows[f"{head}_probs"]])
        truth = np.array([names.index(t) for t in rows[f"true_{head}"]])
        value, lower, upper = (
            bootstrap_ci(lambda p, y: ece(p, y, n_bins), probs, truth, n_boot=boot, alpha=alpha)
            if len(rows) >= 2
            else (ece(probs, truth, n_bins),) * 3
        )
        out[head] = {
            "ece": {"estimate": value, "lower": lower, "upper": upper, "n": float(len(rows))},
            "bins": {k: v.tolist() for k, v in reliability_bins(probs, truth, n_bins).items()},
        }
    return out
