"""Stage `baseline`: the TF-IDF + logistic-regression model on the same splits.

Reads:  ``{data.out_dir}/train.parquet`` and ``labels.json``.
Writes: ``{baseline.out_dir}`` (default ``models/baseline/checkpoint``): the fitted pipelines,
        ``triage.json`` and ``run_id``; an MLflow run tagged ``model=tfidf``. Calibrate and
        evaluate it like the transformer, by pointing them at this folder (see ``dvc.yaml``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from triage.config import Config, to_container
from triage.data.splits import label_ids, load_labels, load_split
from triage.modeling.tfidf import TfidfModel
from triage.tracking import Tracker, fingerprint, flatten, git_state

log = logging.getLogger(__name__)


def run(cfg: Config) -> Path:
    """Fit the baseline on the train split; return its checkpoint folder."""
    data_dir, out_dir = Path(cfg.data.out_dir), Path(cfg.baseline.out_dir)
    labels = load_labels(data_dir)
    train = load_split(data_dir, "train")
    start = time.perf_counter()
    model = TfidfModel.fit(
        train["text"].tolist(), label_ids(train, labels), labels, cfg.baseline.c, cfg.baseline.seed
    )
    seconds = time.perf_counter() - start

    tracker = Tracker(
        cfg.tracking.enabled, cfg.tracking.uri, cfg.tracking.experiment, Path(cfg.paths.root)
    )
    tracker.start(
        f"tfidf-{cfg.data.name}",
        {
            **git_state(Path(cfg.paths.root)),
            "stage": "baseline",
            "model": "tfidf",
            "data": cfg.data.name,
        },
    )
    tracker.log_params(
        {
            **flatten({"data": to_container(cfg.data), "baseline": to_container(cfg.baseline)}),
            "data_fingerprint.train": fingerprint(data_dir / "train.parquet"),
        }
    )
    tracker.log_metrics({"baseline/fit_seconds": seconds})
    model.save(out_dir, {"data": cfg.data.name, "c": cfg.baseline.c, "run_id": tracker.run_id})
    tracker.end()
    log.info(
        "baseline: fitted %s on %d rows in %.1f s -> %s", list(labels), len(train), seconds, out_dir
    )
    return out_dir
