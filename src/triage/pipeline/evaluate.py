"""Stage `evaluate`: score a calibrated checkpoint on a held-out split.

Reads:  ``{evaluate.checkpoint}`` (the transformer's or the baseline's), its
        ``{evaluate.calibration}`` and ``{data.out_dir}/{evaluate.split}.parquet``.
Writes into ``{evaluate.out_dir}``:
        ``metrics.json``: per head, overall / per language (``{split}/{head}/{lang}/...``) / per
        source (``{split}@{source}/...``): accuracy, macro-F1, per-class FPR, calibration (ECE
        equal-width and equal-mass, MCE, Brier, NLL, ECE before calibration, the ECE a perfectly
        calibrated model would show on as many rows), AURC, and at the
        thresholds: coverage and the share of wrong automated decisions per class with a Wilson
        upper bound; bootstrap intervals for the headline numbers; ``flags`` naming every class
        whose automated decisions break the target; differences to ``compare_with``; for rows
        of ``data.out_of_scope_sources``, the share sent to review (``oos_rejection``); where
        rows share a ``pair_id`` (one message in two languages), the paired accuracy difference
        per head and language pair (``{split}/{head}/paired/{a}-{b}/...``: bootstrap interval,
        McNemar's test) and ``paired_{head}_{a}-{b}.csv`` (per class, worst first, examples);
        for every set of ``evaluate.extra`` (real text never trained on), its metrics
        (``extra/<set>/<head>/...``, :mod:`triage.modeling.realtext`); with a novelty rule in
        the calibration (:mod:`triage.novelty`), far-out messages count as sent to review in
        every coverage and automation number, and ``{split}/novelty/...`` says how many there
        were and ``{split}/<head>/coverage_without_novelty`` what the rule cost.
        ``predictions.parquet``: per message the labels, predictions, calibrated probabilities,
        the threshold that applied (its language's), the decision per head and the novelty
        with its threshold. ``plots/``:
        reliability diagrams, confusion matrices, risk-coverage curves and per-language bars
        as PNG, and their data as CSV for ``dvc plots``. Everything also goes into the
        checkpoint's MLflow run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from triage.config import Config, EvaluateConfig, to_container
from triage.data.splits import label_ids, load_split
from triage.io import write_atomic, write_json
from triage.modeling import plots
from triage.modeling.calibration import calibrated_probs, load_calibration, row_thresholds, softmax
from triage.modeling.metrics import (
    aurc,
    automation_report,
    bootstrap_ci,
    brier,
    coverage_at,
    ece,
    ece_if_calibrated,
    language_slices,
    mce,
    nll,
    reliability_bins,
    risk_coverage,
    score,
    summary,
)
from triage.modeling.model import load_predictor
from triage.modeling.parity import language_pairs, parity
from triage.modeling.realtext import negative_replies, read_eval_set, score_eval_set
from triage.novelty import NoveltySpec
from triage.routing import RoutingTable
from triage.schema import MISSING_LABEL
from triage.tracking import add_to_checkpoint_run

log = logging.getLogger(__name__)


def evaluate_head(
    logits: np.ndarray,
    y: np.ndarray,
    langs: np.ndarray,
    labels: list[str],
    calibration: dict,
    thresholds: np.ndarray,
    head: str,
    split: str,
    cfg: EvaluateConfig,
) -> tuple[dict[str, float], np.ndarray, np.ndarray, list[str]]:
    """All metrics of one head on its labelled rows, at ``thresholds`` (per row and class);
    calibrated probabilities and decisions for every row; the flags raised."""
    probs = calibrated_probs(logits, langs, calibration["heads"][head])
    auto_all = coverage_at(probs, thresholds, calibration["margin"])
    known = y != MISSING_LABEL
    p, t, lang, th = probs[known], y[known], langs[known], thresholds[known]
    metrics: dict[str, float] = {}
    for group, rows in language_slices(lang):
        if not rows.any():
            continue
        key = f"{split}/{head}/" if group is None else f"{split}/{head}/{group}/"
        metrics[f"{key}ece"] = ece(p[rows], t[rows], cfg.n_bins)
        metrics[f"{key}ece_mass"] = ece(p[rows], t[rows], cfg.n_bins, strategy="mass")
        metrics[f"{key}mce"] = mce(p[rows], t[rows], cfg.n_bins)
        # what sampling noise alone gives a perfectly calibrated model on these rows
        metrics[f"{key}ece_if_calibrated"], metrics[f"{key}ece_if_calibrated_q95"] = (
            ece_if_calibrated(p[rows], cfg.n_bins)
        )
        metrics[f"{key}brier"] = brier(p[rows], t[rows])
        metrics[f"{key}nll"] = nll(p[rows], t[rows])
        metrics[f"{key}ece_uncalibrated"] = ece(softmax(logits[known][rows]), t[rows], cfg.n_bins)
        correct = p[rows].argmax(1) == t[rows]
        metrics[f"{key}aurc"] = aurc(p[rows].max(1), correct)
        auto = automation_report(p[rows], t[rows], th[rows], labels, calibration["margin"])
        metrics.update({f"{key}{k}": v for k, v in auto.items() if k != "n"})
    # bootstrap intervals of the headline numbers (overall)
    for name, fn in {
        "macro_f1": lambda a, b: summary(b, a.argmax(axis=1), labels)["macro_f1"],
        "ece": lambda a, b: ece(a, b, cfg.n_bins),
    }.items():
        _, lo, hi = bootstrap_ci(fn, p, t, n_boot=cfg.bootstrap, seed=0)
        metrics[f"{split}/{head}/{name}_ci_lo"], metrics[f"{split}/{head}/{name}_ci_hi"] = lo, hi
    target = calibration["fpr_target"]
    flags = [
        f"{head}/{label}: {metrics[f'{split}/{head}/auto_fpr/{label}']:.3f} of "
        f"{int(metrics[f'{split}/{head}/n_auto/{label}'])} automated decisions wrong > "
        f"target {target}"
        for label in labels
        if metrics[f"{split}/{head}/auto_fpr/{label}"] > target
    ]
    return metrics, probs, auto_all, flags


def run(cfg: Config) -> Path:
    """Evaluate ``cfg.evaluate.checkpoint`` with its calibration; return the output folder."""
    ecfg = cfg.evaluate
    checkpoint, out_dir, split = Path(ecfg.checkpoint), Path(ecfg.out_dir), ecfg.split
    predictor = load_predictor(checkpoint)
    calibration = load_calibration(Path(ecfg.calibration))
    frame = load_split(Path(cfg.data.out_dir), split)
    spec = novelty_spec(calibration, Path(ecfg.calibration), predictor)
    logits, scores = model_outputs(predictor, frame["text"].tolist(), spec)
    labels = predictor.labels
    targets, langs = label_ids(frame, labels), frame["lang"].to_numpy()

    metrics: dict[str, float] = {}
    flags: list[str] = []
    probs, decisions = {}, {}
    # per message and class: the threshold in the message's language; none for a far-out one
    thresholds = {h: row_thresholds(calibration["heads"][h], n, langs) for h, n in labels.items()}
    ungated = {h: t.copy() for h, t in thresholds.items()}
    if spec is not None:
        far = spec.far(scores)
        metrics.update(novelty_metrics(far, langs, spec, split))
        for table in thresholds.values():
            table[far] = np.inf
    for head, names in labels.items():
        head_metrics, probs[head], decisions[head], head_flags = evaluate_head(
            logits[head],
            targets[head],
            langs,
            names,
            calibration,
            thresholds[head],
            head,
            split,
            ecfg,
        )
        metrics.update(head_metrics)
        flags += head_flags
        if spec is not None:  # what the far-out rule cost
            known = targets[head] != MISSING_LABEL
            metrics[f"{split}/{head}/coverage_without_novelty"] = float(
                coverage_at(probs[head][known], ungated[head][known], calibration["margin"]).mean()
            )
    metrics.update(score(probs, targets, langs, labels, split))
    # Per source too (`test@authored/...`): the same key in a data=authored run and a
    # data=social run compares the two on the same authored test messages.
    for source in sorted(frame["source"].unique()):
        rows = (frame["source"] == source).to_numpy()
        metrics.update(
            score(
                {h: p[rows] for h, p in probs.items()},
                {h: t[rows] for h, t in targets.items()},
                langs[rows],
                labels,
                f"{split}@{source}",
            )
        )
    # Out-of-scope messages (CLINC150's oos queries) have no class to be right about: they are
    # handled correctly when no class passes its threshold, i.e. when they go to review.
    out_of_scope = frame["source"].isin(list(cfg.data.out_of_scope_sources)).to_numpy()
    if out_of_scope.any():
        for head in labels:
            metrics[f"{split}/{head}/oos_rejection"] = float(
                1 - decisions[head][out_of_scope].mean()
            )
            metrics[f"{split}/{head}/oos_n"] = float(out_of_scope.sum())
    # Parity on identical messages: rows that share a pair_id are one message in two languages
    out_dir.mkdir(parents=True, exist_ok=True)
    parity_files = []
    for lang_a, lang_b in language_pairs(frame, list(cfg.data.languages)):
        for head, names in labels.items():
            pred = probs[head].argmax(axis=1)
            numbers, per_class = parity(frame, targets[head], pred, names, lang_a, lang_b)
            if not numbers:
                continue
            key = f"{split}/{head}/paired/{lang_a}-{lang_b}"
            metrics.update({f"{key}/{name}": value for name, value in numbers.items()})
            parity_files.append(out_dir / f"paired_{head}_{lang_a}-{lang_b}.csv")
            write_atomic(parity_files[-1], lambda p, t=per_class: t.to_csv(p, index=False))
            log.info(
                "%s %s on %d identical messages: %s - %s accuracy %+.4f [%+.4f, %+.4f], "
                "McNemar p %.3g",
                split,
                head,
                numbers["n"],
                lang_a,
                lang_b,
                numbers["diff"],
                numbers["diff_lo"],
                numbers["diff_hi"],
                numbers["mcnemar_p"],
            )
    # Real text the model never trained on (evaluate.extra), with the same calibration
    for name in ecfg.extra:
        extra = read_eval_set(
            name,
            to_container(ecfg.sets),
            labels,
            Path(cfg.paths.root),
            Path(cfg.paths.public_data),
        )
        extra_logits, extra_scores = model_outputs(predictor, extra["text"].tolist(), spec)
        extra_langs = extra["lang"].to_numpy()
        extra_far = None if spec is None else spec.far(extra_scores)
        extra_probs = {
            head: calibrated_probs(extra_logits[head], extra_langs, calibration["heads"][head])
            for head in labels
        }
        scored = score_eval_set(
            extra_probs, label_ids(extra, labels), labels, name, ecfg.n_bins, extra_far
        )
        metrics.update(scored)
        if {"intent", "sentiment"} <= set(labels):
            metrics.update(
                negative_replies(
                    extra_probs,
                    label_ids(extra, labels)["sentiment"],
                    row_thresholds(calibration["heads"]["intent"], labels["intent"], extra_langs),
                    labels,
                    RoutingTable.from_dict(to_container(cfg.routing)),
                    calibration["margin"],
                    name,
                    extra_far,
                )
            )
        for key in sorted(k for k in scored if k.endswith("/macro_f1")):
            log.info(
                "%s: macro-F1 %.4f, accuracy at >= 0.9 confidence %.4f (%d rows)",
                key.removesuffix("/macro_f1"),
                scored[key],
                scored[key.replace("/macro_f1", "/accuracy_at_0.9")],
                scored[key.replace("/macro_f1", "/n")],
            )
    metrics.update(compare(metrics, ecfg.compare_with))

    predictions = frame.copy()
    for head, names in labels.items():
        predictions[f"pred_{head}"] = [names[i] for i in probs[head].argmax(axis=1)]
        predictions[f"{head}_confidence"] = probs[head].max(axis=1)
        predictions[f"{head}_decision"] = np.where(decisions[head], "auto", "review")
        # the threshold its top class had to reach, in its language (inf: never automatic)
        predictions[f"{head}_threshold"] = thresholds[head][
            np.arange(len(frame)), probs[head].argmax(axis=1)
        ]
        predictions[f"{head}_probs"] = list(probs[head])
    if spec is not None:
        predictions["novelty"] = scores
        predictions["novelty_threshold"] = spec.threshold
    write_json(out_dir / "metrics.json", {**metrics, "flags": flags})
    write_atomic(out_dir / "predictions.parquet", lambda p: predictions.to_parquet(p))
    figures = write_plots(out_dir / "plots", probs, targets, langs, labels, metrics, split, ecfg)

    add_to_checkpoint_run(
        cfg.tracking,
        Path(cfg.paths.root),
        checkpoint,
        metrics,
        [(out_dir / "metrics.json", "evaluation"), (out_dir / "predictions.parquet", "evaluation")]
        + [(path, "evaluation") for path in parity_files]
        + [(figure, "evaluation/plots") for figure in figures],
    )
    for head in labels:
        log.info(
            "%s %s: macro-F1 %.4f, ECE %.4f (before calibration %.4f), coverage %.3f, "
            "worst automated FPR %.3f",
            split,
            head,
            metrics[f"{split}/{head}/macro_f1"],
            metrics[f"{split}/{head}/ece"],
            metrics[f"{split}/{head}/ece_uncalibrated"],
            metrics[f"{split}/{head}/coverage"],
            metrics[f"{split}/{head}/auto_fpr_max"],
        )
    for flag in flags:
        log.warning("target broken: %s", flag)
    return out_dir


def novelty_spec(calibration: dict, calibration_file: Path, predictor) -> NoveltySpec | None:
    """The calibration's novelty rule, where it has one and the model gives embeddings."""
    entry = calibration.get("novelty")
    if entry is None or not hasattr(predictor, "outputs"):
        return None
    return NoveltySpec.load(entry, calibration_file.parent)


def model_outputs(
    predictor, texts: list[str], spec: NoveltySpec | None
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Logits per head, and each text's novelty where ``spec`` is given."""
    if spec is None:
        return predictor.logits(texts), None
    logits, embeddings = predictor.outputs(texts)
    return logits, spec.score(embeddings)


def novelty_metrics(
    far: np.ndarray, langs: np.ndarray, spec: NoveltySpec, split: str
) -> dict[str, float]:
    """The share of messages sent to review as far out, overall and per language."""
    out = {f"{split}/novelty/threshold": spec.threshold, f"{split}/novelty/far_share": far.mean()}
    for lang in sorted(set(langs)):
        out[f"{split}/novelty/{lang}/far_share"] = far[langs == lang].mean()
    return {k: float(v) for k, v in out.items()}


def compare(metrics: dict[str, float], other_file: str | None) -> dict[str, float]:
    """``delta/<key>`` = ours - theirs for every macro-F1 key both evaluations have."""
    if not other_file or not Path(other_file).is_file():
        return {}
    other = json.loads(Path(other_file).read_text(encoding="utf-8"))
    return {
        f"delta/{k}": v - other[k]
        for k, v in metrics.items()
        if k.endswith("macro_f1") and isinstance(other.get(k), (int, float))
    }


def write_plots(
    folder: Path,
    probs: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    langs: np.ndarray,
    labels: dict[str, list[str]],
    metrics: dict[str, float],
    split: str,
    cfg: EvaluateConfig,
) -> list[Path]:
    """PNG figures and their CSV data (for ``dvc plots``) per head."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for head, names in labels.items():
        known = targets[head] != MISSING_LABEL
        p, t = probs[head][known], targets[head][known]
        bins = pd.DataFrame(reliability_bins(p, t, cfg.n_bins))
        curve = risk_coverage(p.max(1), p.argmax(1) == t)
        curve = pd.DataFrame({k: curve[k] for k in ("coverage", "risk", "threshold")})
        for name, table in (("reliability", bins), ("risk_coverage", curve)):
            path = folder / f"{head}_{name}.csv"
            table.to_csv(path, index=False)
            files.append(path)
        files += [
            plots.reliability(bins, folder / f"{head}_reliability.png", head),
            plots.confusion(t, p.argmax(1), names, folder / f"{head}_confusion.png"),
            plots.risk_coverage(curve, folder / f"{head}_risk_coverage.png", head),
            plots.per_language(
                metrics, split, head, sorted(set(langs[known])), folder / f"{head}_per_language.png"
            ),
        ]
    return files
