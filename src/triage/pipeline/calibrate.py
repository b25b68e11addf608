"""Stage `calibrate`: temperatures and automation thresholds, fitted on the calib split.

Reads:  the checkpoint in ``{calibrate.checkpoint}`` (the transformer's by default, or the
        TF-IDF baseline's) and ``{data.out_dir}/calib.parquet``.
Writes: ``{calibrate.out_file}`` (default ``models/calibration.json``): per head the global
        temperature, per-language temperatures where they help, NLL and ECE before and after,
        and per class the threshold with how it was obtained, pooled and per language
        (``language_thresholds``); the target and margin rule; for the transformer, the
        novelty threshold (``novelty``, :mod:`triage.novelty`) with its bank of training
        embeddings beside it (``<out_file stem>.novelty.npy``, read from the training split).
        The numbers also go into the training run in MLflow (``calib/{head}/...``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from triage.config import CalibrateConfig, Config, NoveltyConfig
from triage.data.splits import label_ids, load_split
from triage.io import write_atomic
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
from triage.novelty import BANK_SUFFIX, novelty, save_bank, unit
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
    with_novelty = cfg.calibrate.novelty.enabled and hasattr(predictor, "outputs")
    if with_novelty:
        logits, embeddings = predictor.outputs(frame["text"].tolist())
    else:
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
    bank_file = out_file.with_suffix(BANK_SUFFIX)
    if with_novelty:
        train = load_split(Path(cfg.data.out_dir), "train")
        result["novelty"] = fit_novelty(
            predictor, train, embeddings, langs, cfg.calibrate.novelty, bank_file, cfg.data.seed
        )
    else:
        bank_file.unlink(missing_ok=True)  # a bank left by an earlier run does not apply
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
    if with_novelty:
        fit = result["novelty"]
        log.info(
            "novelty: bank of %d training messages, k=%d, threshold %.4f (%.1f%% of calib rows "
            "far out)",
            fit["n_bank"],
            fit["k"],
            fit["threshold"],
            100 * fit["calib_far_share"],
        )
        metrics["calib/novelty/threshold"] = fit["threshold"]
    artifacts = [(out_file, "calibration")] + ([(bank_file, "calibration")] if with_novelty else [])
    add_to_checkpoint_run(cfg.tracking, Path(cfg.paths.root), checkpoint, metrics, artifacts)
    return out_file


def fit_novelty(
    predictor,
    train: pd.DataFrame,
    calib_embeddings: np.ndarray,
    calib_langs: np.ndarray,
    cfg: NoveltyConfig,
    bank_file: Path,
    seed: int,
) -> dict:
    """Embed the training rows (a seeded sample of ``cfg.max_bank`` at most) into the bank,
    write it to ``bank_file`` (float16) and set the threshold at ``cfg.quantile`` of the calib
    rows' novelty; return the calibration's ``novelty`` entry."""
    if len(train) > cfg.max_bank:
        train = train.sample(n=cfg.max_bank, random_state=seed)
    _, train_embeddings = predictor.outputs(train["text"].tolist())
    bank = unit(train_embeddings).astype(np.float16)
    write_atomic(bank_file, lambda p: save_bank(p, bank))
    scores = novelty(calib_embeddings, bank, cfg.k)
    threshold = float(np.quantile(scores, cfg.quantile))
    far = scores >= threshold
    return {
        "bank": bank_file.name,
        "n_bank": len(bank),
        "k": cfg.k,
        "quantile": cfg.quantile,
        "threshold": threshold,
        "calib_far_share": float(far.mean()),
        "calib_far_share_by_language": {
            str(lang): float(far[calib_langs == lang].mean()) for lang in sorted(set(calib_langs))
        },
    }
