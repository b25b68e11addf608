"""Stage `prepare`: read the configured sources and write clean, leakage-free splits.

Reads:  the sources of ``data.sources`` (``data/authored/`` by default; public sets under
        ``paths.public_data``).
Writes: ``{data.out_dir}/{train,val,calib,test}.parquet`` (schema ``id, text, lang, intent,
        sentiment, source, channel, created_at``), ``labels.json`` (label order per head) and
        ``report.json`` (rows per source, language, label and split; dropped rows and why).
"""

from __future__ import annotations

import logging
from pathlib import Path

from triage.config import Config, to_container
from triage.data.build import build_dataset
from triage.data.splits import save_splits
from triage.io import write_json
from triage.schema import SPLITS

log = logging.getLogger(__name__)


def run(cfg: Config) -> Path:
    """Prepare the data of ``cfg.data``; return the output folder."""
    data_cfg = to_container(cfg.data)
    out_dir = Path(data_cfg["out_dir"])
    log.info(
        "prepare: data=%s, %d source(s) -> %s", data_cfg["name"], len(data_cfg["sources"]), out_dir
    )
    frame, labels, report = build_dataset(
        data_cfg, Path(cfg.paths.root), Path(cfg.paths.public_data)
    )
    save_splits(frame, labels, out_dir)
    write_json(out_dir / "report.json", report)
    log.info(
        "prepare: %d rows: %s",
        report["rows"],
        ", ".join(f"{s} {report['splits'][s]}" for s in SPLITS),
    )
    log.info("languages: %s", {k: sum(v.values()) for k, v in report["languages"].items()})
    for source, reasons in report["dropped"].items():
        log.info("dropped from %s: %s", source, reasons)
    for warning in report["warnings"]:
        log.warning(warning)
    return out_dir
