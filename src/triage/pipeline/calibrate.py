"""Stage `calibrate`: temperatures and automation thresholds, fitted on the calib split.

Reads:  the checkpoint in ``{calibrate.checkpoint}`` (the transformer's by default, or the
        TF-IDF baseline's) and ``{data.out_dir}/calib.parquet``.
Writes: ``{calibrate.out_file}`` (default ``models/calibration.json``): per head the global
        temperature, per-language temperatures where they help, NLL and ECE before and after,
        and per class the threshold with how it was obtained, pooled and per language
        (``language_thresholds``); the target and margin rule. The
        numbers also go into the training run in MLflow (``calib/{head}/...``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from triage.config import CalibrateConfig, Config
from triage.data.splits import label_ids, load_split
from triage.modeling.calibration import (
    calibrated_probs,
    choose_thresholds,
    fit_language_temperatures,
    fit_temperature,
    save_calibration,
    softmax,
)
from triage.modeling.metrics import ece, nll
from triage.modeling.model import load_predictor
from triage.schema import MISSING_LABEL
from triage.tracking import add_to_checkpoint_run

log = logging.getLogger(__name__)


def calibrate_head(
    logits: np.ndarray,
    y: np.ndarray,
    langs: np.ndarray,
    labels: list[str],
    cfg: CalibrateConfig,
    out_of_scope: np.ndarray,
) -> dict:
    """Fit one head's temperature(s) on its labelled calib rows, then its thresholds on those
    rows plus the out-of-scope ones, where any automated decision counts as wrong."""
    known = y != MISSING_LABEL
    temperature = fit_temperature(logits[known], y[known])
    head: dict = {"temperature": temperature, "n_calib": int(known.sum())}
    if cfg.per_language_temperatures:
        head["languages"] = fit_language_temperatures(
            logits[known], y[known], langs[known], temperature, cfg.min_rows_per_language
        )
    before, after = softmax(logits), calibrated_probs(logits, langs, head)
    head["before"] = {"nll": nll(before[known], y[known]), "ece": ece(before[known], y[known])}
    head["after"] = {"nll": nll(after[known], y[known]), "ece": ece(after[known], y[known])}
    rows = known | out_of_scope
    # an out-of-scope row's "class" is -1: no prediction is ever right about it
    y_thresholds = np.where(known, y, -1)[rows]
    head["n_out_of_scope"] = int((out_of_scope & ~known).sum())

    def thresholds(among: np.ndarray) -> dict[str, dict]:
        return choose_thresholds(
            after[rows][among],
            y_thresholds[among],
            labels,
            cfg.fpr_target,
            cfg.min_decisions,
            cfg.margin,
            cfg.bound,
        )

    head["thresholds"] = thresholds(np.ones(int(rows.sum()), bool))
    row_langs = langs[rows]
    if cfg.per_language_thresholds and len(set(row_langs)) > 1:
        head["language_thresholds"] = {
            lang: thresholds(row_langs == lang)
            for lang in sorted(set(row_langs))
            if (row_langs == lang).sum() >= cfg.min_rows_per_language
        }
    return head


def run(cfg: Config) -> Path:
    """Calibrate the checkpoint of ``cfg.calibrate.checkpoint``; return the calibration file."""
    checkpoint, out_file = Path(cfg.calibrate.checkpoint), Path(cfg.calibrate.out_file)
    predictor = load_predictor(checkpoint)
    frame = load_split(Path(cfg.data.out_dir), "calib")
    logits = predictor.logits(frame["text"].tolist())
    targets, langs = label_ids(frame, predictor.labels), frame["lang"].to_numpy()
    out_of_scope = frame["source"].isin(list(cfg.data.out_of_scope_sources)).to_numpy()
    heads = {
        head: calibrate_head(logits[head], targets[head], langs, names, cfg.calibrate, out_of_scope)
        for head, names in predictor.labels.items()
    }
    result = {
        "fpr_target": cfg.calibrate.fpr_target,
        "margin": cfg.calibrate.margin,
        "bound": cfg.calibrate.bound,
        "min_decisions": cfg.calibrate.min_decisions,
        "split": "calib",
        "heads": heads,
    }
    save_calibration(out_file, result)

    metrics = {}
    for head, fit in heads.items():
        log.info(
            "%s: T=%.3f, NLL %.4f -> %.4f, ECE %.4f -> %.4f",
            head,
            fit["temperature"],
            fit["before"]["nll"],
            fit["after"]["nll"],
            fit["before"]["ece"],
            fit["after"]["ece"],
        )
        for lang, value in fit.get("languages", {}).items():
            log.info("  %s: T=%.3f (%s)", lang, value["temperature"], value["why"])
        tables = {"all": fit["thresholds"], **fit.get("language_thresholds", {})}
        for name, table in tables.items():
            hows = [t["how"] for t in table.values()]
            log.info(
                "  thresholds (%s): %d own, %d global, %d raised above the global, %d never",
                name,
                hows.count("class"),
                hows.count("global"),
                hows.count("raised"),
                hows.count("never"),
            )
        metrics.update(
            {
                f"calib/{head}/temperature": fit["temperature"],
                **{
                    f"calib/{head}/{k}_{when}": v
                    for when in ("before", "after")
                    for k, v in fit[when].items()
                },
            }
        )
    add_to_checkpoint_run(
        cfg.tracking, Path(cfg.paths.root), checkpoint, metrics, [(out_file, "calibration")]
    )
    return out_file
