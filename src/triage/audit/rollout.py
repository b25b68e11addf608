"""``triage rollout-report``: champion against challenger on live traffic, with evidence.

For the period of an audit batch (``audit.batch``, default the newest), from the prediction log
(decided records and the shadow's, :mod:`triage.serving.service`): per message, what the
champion and the challenger said (one decided, the other scored it in the shadow). Reported:

- agreement of the two models' intents, overall and per champion intent;
- decision changes (champion auto -> challenger review and back) and each model's coverage;
- with the batch's reviewed items (the reviewers' intent as truth, weighted by 1 / inclusion
  probability as the audit report does, :func:`triage.audit.stats.weighted_rate`): each model's
  accuracy and share of wrong automated decisions with intervals, and the same per arm (the
  messages each model decided);
- a verdict: ``promote`` (the challenger's wrong automated decisions are below the target with
  their whole interval, and its accuracy is not below the champion's by more than the
  tolerance), ``hold`` (the challenger's estimate breaks the target or trails the champion by
  more than the tolerance), or ``not enough evidence`` (fewer than ``min_reviewed`` reviewed
  messages with both predictions, or the intervals do not settle it).

Writes ``reports/rollout/<batch>/report.{md,html}`` and ``metrics.json`` and an MLflow run.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from triage.audit import stats as st
from triage.audit.report.estimates import reviewed_frame
from triage.audit.report.render import render_html, render_markdown
from triage.audit.report.sections import Section
from triage.audit.store.db import load_batch
from triage.config import Config, to_container
from triage.errors import DataError
from triage.io import atomic_folder, write_json
from triage.serving.shared import log_exists, open_prediction_log

log = logging.getLogger(__name__)

MODELS = ("champion", "challenger")


def paired(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per message that both models scored: ``message_id``, ``arm`` (which decided),
    and per model ``<model>_intent``, ``<model>_decision``, ``<model>_version``."""
    decided: dict[str, dict[str, Any]] = {}
    shadow: dict[str, dict[str, Any]] = {}
    for r in records:
        arm = (r.get("rollout") or {}).get("arm")
        if arm in MODELS:
            decided[r["message_id"]] = r
        elif arm == "shadow":
            shadow[r["message_id"]] = r
    rows = []
    for message_id, first in decided.items():
        other = shadow.get(message_id)
        if other is None:
            continue
        arm = first["rollout"]["arm"]
        by_model = {arm: first, ("challenger" if arm == "champion" else "champion"): other}
        row = {
            "message_id": message_id,
            "arm": arm,
            "latency_ms": first["rollout"].get("latency_ms"),
        }
        for model in MODELS:
            r = by_model[model]
            row.update(
                {
                    f"{model}_intent": r["intent"],
                    f"{model}_decision": r["decision"],
                    f"{model}_version": r["model_version"],
                }
            )
        rows.append(row)
    columns = ["message_id", "arm", "latency_ms"] + [
        f"{m}_{k}" for m in MODELS for k in ("intent", "decision", "version")
    ]
    return pd.DataFrame(rows, columns=columns)


def live_numbers(pairs: pd.DataFrame) -> dict[str, Any]:
    """Agreement, decision changes and coverage on every paired message."""
    if pairs.empty:
        return {"n": 0}
    agree = pairs["champion_intent"] == pairs["challenger_intent"]
    auto = {m: pairs[f"{m}_decision"] == "auto" for m in MODELS}
    per_intent = {
        str(intent): {"n": len(group), "agreement": float(agree[group.index].mean())}
        for intent, group in pairs.groupby("champion_intent", sort=True)
    }
    return {
        "n": len(pairs),
        "arms": {str(k): int(v) for k, v in pairs["arm"].value_counts().items()},
        "agreement": float(agree.mean()),
        "agreement_per_intent": per_intent,
        "auto_to_review": int((auto["champion"] & ~auto["challenger"]).sum()),
        "review_to_auto": int((~auto["champion"] & auto["challenger"]).sum()),
        "coverage": {m: float(auto[m].mean()) for m in MODELS},
        # the time a request waited for its decisions, by the arm that decided
        "latency_ms_p50": {
            str(arm): float(group["latency_ms"].median())
            for arm, group in pairs.dropna(subset=["latency_ms"]).groupby("arm")
        },
        "versions": {m: sorted(pairs[f"{m}_version"].dropna().unique().tolist()) for m in MODELS},
    }


def reviewed_numbers(pairs: pd.DataFrame, reviewed: pd.DataFrame, alpha: float) -> dict[str, Any]:
    """Each model's weighted accuracy and share of wrong automated decisions on the reviewed
    messages, overall and per arm. ``reviewed``: ``message_id``, ``true_intent``, ``weight``
    (1 / inclusion probability)."""
    known = reviewed[reviewed["true_intent"].notna()][["message_id", "true_intent", "weight"]]
    both = pairs.merge(known, on="message_id")
    out: dict[str, Any] = {"n": len(both)}
    for scope, rows in [("all", both), *((f"arm {a}", both[both["arm"] == a]) for a in MODELS)]:
        out[scope] = {}
        for model in MODELS:
            right = rows[f"{model}_intent"] == rows["true_intent"]
            auto = rows[f"{model}_decision"] == "auto"
            out[scope][model] = {
                "accuracy": st.weighted_rate(right.to_numpy(), rows["weight"].to_numpy(), alpha),
                "wrong_auto": st.weighted_rate(
                    (~right[auto]).to_numpy(), rows.loc[auto, "weight"].to_numpy(), alpha
                ),
            }
    return out


def judge(reviewed: dict[str, Any], target: float, tolerance: float, min_reviewed: int) -> dict:
    """The verdict from :func:`reviewed_numbers`' overall estimates."""
    if reviewed.get("n", 0) < min_reviewed:
        return {
            "verdict": "not enough evidence",
            "why": f"{reviewed.get('n', 0)} reviewed messages with both models' predictions; "
            f"at least {min_reviewed} needed",
        }
    champion, challenger = reviewed["all"]["champion"], reviewed["all"]["challenger"]
    wrong, acc = challenger["wrong_auto"], challenger["accuracy"]
    gap = acc["estimate"] - champion["accuracy"]["estimate"]
    status, sentence = st.verdict(wrong, target, "max")
    if status == "not met" or gap < -tolerance:
        verdict = "hold"
    elif status == "met":
        verdict = "promote"
    else:
        verdict = "not enough evidence"
    return {
        "verdict": verdict,
        "why": f"challenger's wrong automated decisions {sentence}; its accuracy "
        f"{acc['estimate']:.1%} against the champion's {champion['accuracy']['estimate']:.1%} "
        f"(tolerance {tolerance:.1%})",
    }


def _interval(est: dict[str, float]) -> str:
    if math.isnan(est["estimate"]):
        return "n/a"
    return f"{est['estimate']:.1%} [{est['lower']:.1%}, {est['upper']:.1%}] (n {est['n']:.0f})"


def report_sections(metrics: dict[str, Any], batch: dict[str, Any]) -> list[Section]:
    live, reviewed, judgement = metrics["live"], metrics["reviewed"], metrics["judgement"]
    parts = [
        Section(
            "Verdict",
            [
                f"**{judgement['verdict']}**: {judgement['why']}.",
                f"Period {batch.get('since')} to {batch.get('until')} (audit batch {batch['id']}).",
            ],
        )
    ]
    if live["n"]:
        parts.append(
            Section(
                "Live traffic (every message both models scored)",
                [
                    f"{live['n']} messages (decided by arm: {live['arms']}); models "
                    f"{live['versions']}. Intent agreement {live['agreement']:.1%}; champion auto "
                    f"-> challenger review {live['auto_to_review']}, review -> auto "
                    f"{live['review_to_auto']}; coverage champion "
                    f"{live['coverage']['champion']:.1%}, challenger "
                    f"{live['coverage']['challenger']:.1%}; request latency p50 by deciding arm "
                    + (
                        ", ".join(f"{a} {v:.1f} ms" for a, v in live["latency_ms_p50"].items())
                        or "not logged"
                    )
                    + ".",
                ],
                tables=[
                    (
                        ["champion intent", "messages", "agreement"],
                        [
                            [k, v["n"], v["agreement"]]
                            for k, v in live["agreement_per_intent"].items()
                        ],
                    )
                ],
            )
        )
    if reviewed.get("n"):
        rows = [
            [scope, model, _interval(v["accuracy"]), _interval(v["wrong_auto"])]
            for scope in ("all", *(f"arm {a}" for a in MODELS))
            for model, v in reviewed[scope].items()
        ]
        parts.append(
            Section(
                "Reviewed messages (weighted by 1 / inclusion probability)",
                [f"{reviewed['n']} reviewed messages with both models' predictions."],
                tables=[(["messages", "model", "accuracy", "wrong automated decisions"], rows)],
            )
        )
    return parts


def run(cfg: Config) -> Path:
    """Write the rollout report for ``audit.batch``'s period and log it to MLflow."""
    from triage.tracking import Tracker

    acfg, rcfg = cfg.audit, to_container(cfg.audit.rollout)
    batch, items, labels = load_batch(acfg.db_url, acfg.batch)
    if not log_exists(acfg.prediction_log):
        raise DataError(f"{acfg.prediction_log} not found: set audit.prediction_log")
    plog = open_prediction_log(acfg.prediction_log, retention_days=None)
    try:
        records = plog.read(
            since=datetime.fromisoformat(batch["since"]) if batch.get("since") else None,
            until=datetime.fromisoformat(batch["until"]) if batch.get("until") else None,
            shadow=True,
        )
    finally:
        plog.close()
    pairs = paired(records)
    if pairs.empty:
        log.warning("no message in the period was scored by both models: is a shadow running?")
    frame = reviewed_frame(items, labels) if items else pd.DataFrame()
    reviewed = reviewed_numbers(pairs, frame, rcfg["alpha"]) if not frame.empty else {"n": 0}
    metrics = {
        "live": live_numbers(pairs),
        "reviewed": reviewed,
        "judgement": judge(
            reviewed, rcfg["wrong_auto_target"], rcfg["accuracy_tolerance"], rcfg["min_reviewed"]
        ),
    }
    out_dir = Path(rcfg["out_dir"]) / batch["id"]
    title = f"Rollout report: {batch['id']}"
    parts = report_sections(metrics, batch)
    with atomic_folder(out_dir) as tmp:
        write_json(tmp / "metrics.json", metrics)
        (tmp / "report.md").write_text(render_markdown(title, parts), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(title, parts), encoding="utf-8")
    tcfg = cfg.tracking
    tracker = Tracker(tcfg.enabled, tcfg.uri, tcfg.experiment, Path(cfg.paths.root))
    tracker.start(f"rollout {batch['id']}", {"stage": "rollout-report", "audit_batch": batch["id"]})
    try:
        tracker.log_params({"verdict": metrics["judgement"]["verdict"]})
        flat = {"live/n": float(metrics["live"]["n"]), "reviewed/n": float(reviewed.get("n", 0))}
        if metrics["live"]["n"]:
            flat["live/agreement"] = metrics["live"]["agreement"]
        for model in MODELS if reviewed.get("n") else ():
            for name in ("accuracy", "wrong_auto"):
                value = reviewed["all"][model][name]["estimate"]
                if not math.isnan(value):
                    flat[f"reviewed/{model}/{name}"] = value
        tracker.log_metrics(flat)
        for path in sorted(out_dir.iterdir()):
            tracker.log_artifact(path, "rollout")
    finally:
        tracker.end()
    print(f"{out_dir / 'report.html'}  verdict: {metrics['judgement']['verdict']}")
    return out_dir
