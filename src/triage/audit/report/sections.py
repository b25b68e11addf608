"""The report's text: sections of paragraphs, tables and figures from the numbers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Section:
    """A part of the report, rendered both as Markdown and as HTML."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[Any]]]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)


def _interval(est: dict[str, float]) -> str:
    """``85.0% [80.1%, 89.2%]`` from an estimate with bounds."""
    if math.isnan(est["estimate"]):
        return "n/a"
    return f"{est['estimate']:.1%} [{est['lower']:.1%}, {est['upper']:.1%}]"


def sections(metrics: dict[str, Any], batch: dict[str, Any]) -> list[Section]:
    """The report's text, tables and figures from :func:`.metrics.compute`'s numbers."""
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
        if key == "novelty":
            drift_rows.append(
                ["far out (sent to review), test split", value["far_share_reference"]]
            )
            drift_rows.append(["far out (sent to review), period", value["far_share_period"]])
    drift_section = Section(
        "Drift against the training data",
        [
            "Population stability index (PSI; < 0.1 stable, 0.1 to 0.25 moderate, > 0.25 "
            "large) of the period's mix against the training split (labels, languages) and "
            "against the test predictions of `triage evaluate` (confidence; novelty, the "
            "distance of each message to the training data: a message at or above the "
            "bundle's threshold is far out and goes to review whatever its confidence)."
        ],
        tables=[(["comparison", "value"], drift_rows)],
    )
    return [overview, verdict, estimates, agreement_section, calib, drift_section]
