"""Stage `evaluate`: score the trained checkpoint on a held-out split.

Reads:  ``{train.out_dir}`` (the checkpoint and its MLflow run id) and
        ``{data.out_dir}/{evaluate.split}.parquet``.
Writes: ``{evaluate.out_dir}/metrics.json`` (``{split}/{head}/{metric}`` overall and
        ``{split}/{head}/{lang}/{metric}`` per language; the same under ``{split}@{source}``
        for each source) and ``predictions.parquet`` (one row
        per message: labels, predicted labels and probabilities per head); the same metrics and
        files go into the training run in MLflow.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from triage.data import label_ids, load_split, write_atomic, write_json
from triage.metrics import score
from triage.model import load_checkpoint, predict_proba
from triage.tracking import Tracker, read_run_id

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> Path:
    """Evaluate ``cfg.train.out_dir`` on ``cfg.evaluate.split``; return the output folder."""
    checkpoint, out_dir = Path(cfg.train.out_dir), Path(cfg.evaluate.out_dir)
    split = cfg.evaluate.split
    model, tokenizer, meta = load_checkpoint(checkpoint)
    frame = load_split(Path(cfg.data.out_dir), split)
    probs = predict_proba(
        model,
        tokenizer,
        frame["text"].tolist(),
        meta["input_prefix"],
        meta["max_length"],
        cfg.evaluate.batch_size,
    )
    targets, langs = label_ids(frame, model.labels), frame["lang"].to_numpy()
    metrics = score(probs, targets, langs, model.labels, split)
    # Per source too (`test@authored/...`): the same key in a data=authored run and a
    # data=social run compares the two on the same authored test messages.
    for source in sorted(frame["source"].unique()):
        rows = (frame["source"] == source).to_numpy()
        metrics.update(
            score(
                {h: p[rows] for h, p in probs.items()},
                {h: t[rows] for h, t in targets.items()},
                langs[rows],
                model.labels,
                f"{split}@{source}",
            )
        )

    predictions = frame.copy()
    for head, names in model.labels.items():
        predictions[f"pred_{head}"] = [names[i] for i in probs[head].argmax(axis=1)]
        predictions[f"{head}_probs"] = list(probs[head])
    write_json(out_dir / "metrics.json", metrics)
    write_atomic(out_dir / "predictions.parquet", lambda p: predictions.to_parquet(p))

    tracker = Tracker(
        cfg.tracking.enabled, cfg.tracking.uri, cfg.tracking.experiment, Path(cfg.paths.root)
    )
    run_id = read_run_id(checkpoint)
    if run_id:
        tracker.resume(run_id)
        tracker.log_metrics(metrics)
        tracker.log_artifact(out_dir / "metrics.json", "evaluation")
        tracker.log_artifact(out_dir / "predictions.parquet", "evaluation")
        tracker.end()
    for head in model.labels:
        per_lang = {
            k.split("/")[2]: round(v, 4)
            for k, v in metrics.items()
            if k.startswith(f"{split}/{head}/") and k.endswith("/macro_f1") and k.count("/") == 3
        }
        log.info(
            "%s %s macro-F1 %.4f, per language %s",
            split,
            head,
            metrics[f"{split}/{head}/macro_f1"],
            per_lang,
        )
    return out_dir
