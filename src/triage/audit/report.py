"""``triage audit-report``: what a reviewed audit batch says about the model, against targets.

Reads the batch (``audit.batch``, default the newest) from the audit database, the prediction
log for the batch's period, the training split (``audit.report.train_data``) and the test
predictions of ``triage evaluate`` (``audit.report.reference_predictions``, optional). Writes
``<audit.report.out_dir>/<batch>/``: ``report.md``, ``report.html``, ``metrics.json`` and
``plots/*.png``, and logs all of it to MLflow (one run per report, tagged with the batch and the
model version).

For a sampled batch (see :mod:`triage.audit.stats` for the two estimates):

* accuracy per head; false-positive rate of the automated decisions per predicted class and per
  action (a false positive: the reviewer's intent differs from the model's); precision of the
  moderation actions; each with a control-slice and a weighted estimate and 95% intervals;
* agreement: Cohen's kappa between the first two reviewers of the doubly reviewed items, with a
  bootstrap interval;
* calibration on the control slice (ECE, reliability diagram): the model's confidence against
  the reviewers' labels;
* drift against the training data: label mix (predicted over the whole period, and estimated
  true from the sample), language mix, confidence distribution (against the test predictions),
  as population stability indices;
* a verdict against ``audit.report.targets``, judged on the weighted estimates: FAIL when an
  estimate misses a target, PASS when every interval is within its target, else INCONCLUSIVE
  (estimates within target but intervals that cross it, or targets with no data).

For a label-issue batch: how many flagged training labels the reviewers found wrong.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from triage.audit import stats as st
from triage.audit.store import ItemLabel, load_batch
from triage.config import to_container
from triage.io import atomic_folder, write_json
from triage.modeling.metrics import bootstrap_ci, ece, reliability_bins
from triage.serving.predlog import PredictionLog

log = logging.getLogger(__name__)
HEADS = ("intent", "sentiment")
CONFIDENCE_EDGES = np.linspace(0.0, 1.0, 11)


@dataclass
class Section:
    """A part of the report, rendered both as Markdown and as HTML."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[Any]]]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


def _fmt(value: Any) -> str:
    """A table cell: floats to three decimals, NaN as n/a."""
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def _interval(est: dict[str, float]) -> str:
    """``85.0% [80.1%, 89.2%]`` from an estimate with bounds."""
    if math.isnan(est["estimate"]):
        return "n/a"
    return f"{est['estimate']:.1%} [{est['lower']:.1%}, {est['upper']:.1%}]"


def render_markdown(title: str, sections: list[Section]) -> str:
    """The report as Markdown (tables and relative image links)."""
    lines = [f"# {title}", ""]
    for s in sections:
        lines += [f"## {s.title}", ""]
        for paragraph in s.text:
            lines += [paragraph, ""]
        for header, rows in s.tables:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            for row in rows:
                cells = [_fmt(c).replace("|", "\\|") for c in row]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        for image in s.images:
            lines += [f"![{image}]({image})", ""]
    return "\n".join(lines)


def render_html(title: str, sections: list[Section]) -> str:
    """A self-contained page; every value is escaped (message texts never become markup)."""
    e = html.escape
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>body{{font-family:system-ui,sans-serif;max-width:"
        "1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse;margin:.5em 0}"
        "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}img{max-width:48%}"
        ".fail{color:#b00}.pass{color:#070}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    for s in sections:
        out.append(f"<h2>{e(s.title)}</h2>")
        out += [f"<p>{e(p)}</p>" for p in s.text]
        for header, rows in s.tables:
            out.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
            for row in rows:
                out.append("<tr>" + "".join(f"<td>{e(_fmt(c))}</td>" for c in row) + "</tr>")
            out.append("</table>")
        out += [f"<img src='{e(i)}' alt='{e(i)}'>" for i in s.images]
    out.append("</body></html>")
    return "\n".join(out)


# --- the numbers ---------------------------------------------------------------------------------


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
    return out


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


# --- plots ---------------------------------------------------------------------------------------


def _plots(metrics: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from triage.modeling import plots

    out.mkdir(parents=True, exist_ok=True)
    names = []
    for head, value in metrics["calibration"].items():
        path = out / f"{head}_reliability.png"
        plots.reliability(pd.DataFrame(value["bins"]), path, f"{head} (audit control slice)")
        names.append(f"plots/{path.name}")
    fpr = {k: v["weighted"] for k, v in metrics["fpr_by_class"].items() if k != "all"}
    if fpr:
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(fpr) + 1.5))
        keys = list(fpr)
        est = np.array([fpr[k]["estimate"] for k in keys])
        err = np.array(
            [[est[i] - fpr[k]["lower"], fpr[k]["upper"] - est[i]] for i, k in enumerate(keys)]
        )
        ax.barh(keys, est, xerr=err.T, color="C0", alpha=0.7)
        target = metrics["targets"].get("auto_fpr")
        if target is not None:
            ax.axvline(target, color="C3", ls="--", label=f"target {target:.0%}")
            ax.legend()
        ax.set(xlabel="automated false-positive rate (weighted, 95% CI)", xlim=(0, 1))
        fig.tight_layout()
        fig.savefig(out / "automated_fpr.png", dpi=110)
        plt.close(fig)
        names.append("plots/automated_fpr.png")
    for key, value in metrics["drift"].items():
        if key.endswith("_mix"):
            cats = value.get("labels") or value.get("languages")
            series = {
                k: value[k]
                for k in ("train", "predicted", "estimated_true", "period")
                if value.get(k)
            }
        elif key == "confidence":
            edges = value["edges"]
            cats = [f"{edges[i]:.1f}" for i in range(len(edges) - 1)]
            series = {"test (reference)": value["reference"], "period": value["period"]}
        else:
            continue
        fig, ax = plt.subplots(figsize=(7, 3.2))
        width = 0.8 / len(series)
        for j, (label, vals) in enumerate(series.items()):
            ax.bar(np.arange(len(cats)) + j * width, vals, width=width, label=label)
        ax.set_xticks(np.arange(len(cats)) + 0.4 - width / 2, cats, rotation=45, ha="right")
        ax.set(ylabel="share", title=key.replace("_", " "))
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"drift_{key}.png", dpi=110)
        plt.close(fig)
        names.append(f"plots/drift_{key}.png")
    return names


# --- the stage -----------------------------------------------------------------------------------


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


def sections(metrics: dict[str, Any], batch: dict[str, Any]) -> list[Section]:
    """The report's text, tables and figures from :func:`compute`'s numbers."""
    states = metrics["states"]
    overview = Section(
        "Batch",
        [
            f"Batch {batch['id']} ({batch['kind']}), {metrics['items']} items; period "
            f"{batch.get('since')} to {batch.get('until')}; population "
            f"{batch.get('population')} messages.",
            "Review states: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())) + ".",
        ],
    )
    if batch["kind"] == "label_issues":
        est = metrics["flagged_wrong"]
        overview.text.append(
            f"Flagged training labels that reviewers found wrong: {_interval(est)} of "
            f"{int(est['n'])} reviewed."
        )
        return [overview]
    judgement = metrics["judgement"]
    verdict = Section(
        f"Verdict: {judgement['verdict']}",
        [
            "Judged on the weighted estimates (all reviewed items, inverse-probability "
            "weights) with 95% intervals: met = the interval is within the target; not met = "
            "the estimate misses it; uncertain = the estimate is within, the interval crosses."
        ],
        tables=[
            (
                ["target", "status", "detail"],
                [[c["target"], c["status"], c["detail"]] for c in judgement["checks"]],
            )
        ],
    )
    rows = []
    for head, est in metrics["accuracy"].items():
        rows.append(
            [
                f"{head} accuracy",
                _interval(est["control"]),
                int(est["control"]["n"]),
                _interval(est["weighted"]),
                round(est["weighted"]["n_eff"], 1),
            ]
        )
    for group, kind in (("fpr_by_class", "class"), ("fpr_by_action", "action")):
        for key, est in metrics[group].items():
            rows.append(
                [
                    f"automated FPR, {kind} {key}",
                    _interval(est["control"]),
                    int(est["control"]["n"]),
                    _interval(est["weighted"]),
                    round(est["weighted"]["n_eff"], 1),
                ]
            )
    if metrics["moderation_precision"]:
        est = metrics["moderation_precision"]
        rows.append(
            [
                "moderation precision",
                _interval(est["control"]),
                int(est["control"]["n"]),
                _interval(est["weighted"]),
                round(est["weighted"]["n_eff"], 1),
            ]
        )
    estimates = Section(
        "Estimates",
        [
            "control: the control slice only (a simple random sample of the period, unbiased); "
            "weighted: every reviewed item weighted by 1 / its inclusion probability "
            "(Horvitz-Thompson/Hajek), interval at Kish's effective sample size n_eff. "
            "A false positive is an automated decision whose intent the reviewer changed."
        ],
        tables=[(["rate", "control [95% CI]", "n", "weighted [95% CI]", "n_eff"], rows)],
    )
    agree = metrics["agreement"]
    agreement_section = Section(
        "Agreement between reviewers",
        [f"{agree['items']} items reviewed by two reviewers (neither unclear)."],
        tables=[
            (
                ["head", "Cohen's kappa [95% bootstrap CI]", "raw agreement", "n"],
                [
                    [
                        h,
                        f"{v['estimate']:.3f} [{v['lower']:.3f}, {v['upper']:.3f}]",
                        f"{v['agreement']:.1%}",
                        int(v["n"]),
                    ]
                    for h, v in agree.items()
                    if h != "items"
                ],
            )
        ],
    )
    calib = Section(
        "Calibration on the reviewed control slice",
        [
            "Expected calibration error of the model's top-label confidence against the "
            "reviewers' labels (equal-width bins)."
        ],
        tables=[
            (
                ["head", "ECE [95% bootstrap CI]", "n"],
                [
                    [
                        h,
                        f"{v['ece']['estimate']:.3f} [{v['ece']['lower']:.3f}, "
                        f"{v['ece']['upper']:.3f}]",
                        int(v["ece"]["n"]),
                    ]
                    for h, v in metrics["calibration"].items()
                ],
            )
        ],
    )
    drift_rows = []
    for key, value in metrics["drift"].items():
        if key.endswith("_mix") and "psi_predicted" in value:
            drift_rows.append([f"{key} (predicted in the period vs train)", value["psi_predicted"]])
            drift_rows.append([f"{key} (estimated true vs train)", value["psi_estimated_true"]])
        elif "psi" in value:
            drift_rows.append([key, value["psi"]])
        if key == "confidence":
            drift_rows.append(["confidence: Kolmogorov-Smirnov statistic", value["ks"]])
            drift_rows.append(["confidence: mean, test split", value["mean_reference"]])
            drift_rows.append(["confidence: mean, period", value["mean_period"]])
    drift_section = Section(
        "Drift against the training data",
        [
            "Population stability index (PSI; < 0.1 stable, 0.1 to 0.25 moderate, > 0.25 "
            "large) of the period's mix against the training split (labels, languages) and "
            "against the test predictions of `triage evaluate` (confidence)."
        ],
        tables=[(["comparison", "value"], drift_rows)],
    )
    return [overview, verdict, estimates, agreement_section, calib, drift_section]


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


def _read_optional(path: str | None, what: str) -> pd.DataFrame | None:
    if not path or not Path(path).is_file():
        log.warning("%s not found at %s: that part of the drift section is left out", what, path)
        return None
    return pd.read_parquet(path)


def run(cfg: Any) -> Path:
    """Write the report of ``audit.batch`` (default: the newest) and log it to MLflow."""
    from triage.tracking import Tracker

    acfg = cfg.audit
    rcfg = to_container(acfg.report)
    batch, items, labels = load_batch(acfg.db_url, acfg.batch)
    period: list[dict[str, Any]] = []
    if batch["kind"] == "sample" and Path(acfg.prediction_log).is_file():
        plog = PredictionLog(acfg.prediction_log, retention_days=None)
        try:
            period = plog.read(
                since=datetime.fromisoformat(batch["since"]),
                until=datetime.fromisoformat(batch["until"]),
            )
        finally:
            plog.close()
    if batch["kind"] == "sample" and not period:
        log.warning(
            "no log records for the batch's period in %s (purged?): the period-wide drift "
            "uses the sampled items only",
            acfg.prediction_log,
        )
        period = [{**i, "created_at": i["message_created_at"]} for i in items]
    metrics = compute(
        batch,
        items,
        labels,
        period,
        _read_optional(rcfg["train_data"], "training split"),
        _read_optional(rcfg["reference_predictions"], "test predictions"),
        rcfg,
    )
    out_dir = Path(rcfg["out_dir"]) / batch["id"]
    title = f"Audit report: {batch['id']}"
    parts = sections(metrics, batch)
    with atomic_folder(out_dir) as tmp:
        images = _plots(metrics, tmp / "plots") if batch["kind"] == "sample" else []
        if images and len(parts) > 1:
            parts.append(Section("Figures", images=images))
        write_json(tmp / "metrics.json", metrics)
        (tmp / "report.md").write_text(render_markdown(title, parts) + "\n", encoding="utf-8")
        (tmp / "report.html").write_text(render_html(title, parts) + "\n", encoding="utf-8")
    tcfg = cfg.tracking
    tracker = Tracker(tcfg.enabled, tcfg.uri, tcfg.experiment, Path(cfg.paths.root))
    versions = sorted({str(i["model_version"]) for i in items if i["model_version"]})
    tracker.start(
        f"audit {batch['id']}",
        {"stage": "audit-report", "audit_batch": batch["id"], "model_version": ",".join(versions)},
    )
    try:
        tracker.log_params({"audit.batch": batch["id"], "audit.kind": batch["kind"]})
        tracker.log_metrics(flat_metrics(metrics))
        for path in sorted(out_dir.rglob("*")):
            if path.is_file():
                folder = "audit" if path.parent == out_dir else "audit/plots"
                tracker.log_artifact(path, folder)
    finally:
        tracker.end()
    verdict = metrics.get("judgement", {}).get("verdict", "")
    log.info("audit report %s written to %s %s", batch["id"], out_dir, verdict)
    print(f"{out_dir / 'report.html'}" + (f"  verdict: {verdict}" if verdict else ""))
    if metrics.get("judgement"):
        print(json.dumps(metrics["judgement"]["counts"]))
    return out_dir
