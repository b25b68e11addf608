"""``triage audit-report``: the stage that reads a batch, writes the report and logs it to MLflow
(what it computes and shows: :mod:`triage.audit.report`)."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from triage.audit.report.figures import write_plots
from triage.audit.report.metrics import compute, flat_metrics
from triage.audit.report.render import render_html, render_markdown
from triage.audit.report.sections import Section, sections
from triage.audit.store import load_batch
from triage.config import Config, to_container
from triage.io import atomic_folder, write_json
from triage.serving.shared import log_exists, open_prediction_log

log = logging.getLogger(__name__)


def _read_optional(path: str | None, what: str) -> pd.DataFrame | None:
    if not path or not Path(path).is_file():
        log.warning("%s not found at %s: that part of the drift section is left out", what, path)
        return None
    return pd.read_parquet(path)


def run(cfg: Config) -> Path:
    """Write the report of ``audit.batch`` (default: the newest) and log it to MLflow."""
    from triage.tracking import Tracker

    acfg = cfg.audit
    rcfg = to_container(acfg.report)
    batch, items, labels = load_batch(acfg.db_url, acfg.batch)
    period: list[dict[str, Any]] = []
    if batch["kind"] == "sample" and log_exists(acfg.prediction_log):
        plog = open_prediction_log(acfg.prediction_log, retention_days=None)
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
        images = write_plots(metrics, tmp / "plots") if batch["kind"] == "sample" else []
        if images and len(parts) > 1:
            parts.append(Section("Figures", images=images))
        write_json(tmp / "metrics.json", metrics)
        (tmp / "report.md").write_text(render_markdown(title, parts), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(title, parts), encoding="utf-8")
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
