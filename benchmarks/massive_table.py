"""The MASSIVE benchmark's numbers per run and language, from what `benchmarks/massive.sh` wrote
(models/massive/<run>/{evaluation/metrics.json, evaluation/predictions.parquet,
calibration.json}). Prints Markdown tables; the paired numbers are recomputed from
predictions.parquet (they must equal evaluate's).

    .venv/bin/python benchmarks/massive_table.py              # every run found
    .venv/bin/python benchmarks/massive_table.py joint en_to_nl
"""

from __future__ import annotations

import json
import sys
from collections import Counter

import numpy as np
import pandas as pd
from loopback import ROOT
from sklearn.isotonic import IsotonicRegression

from triage.modeling.metrics import bootstrap_ci, ece, summary
from triage.modeling.parity import parity

RUNS = ROOT / "models" / "massive"
TARGET = 0.05


def isotonic_confidence(predictions: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """Research only: each test row's top-label confidence after a monotone (isotonic) map from
    the calibrated confidence to the chance of being right, fitted on the other half of the
    test rows (two seeded halves, each scored by the map of the other). How much of the ECE
    left after temperature scaling a confidence map fitted on calib could remove; a monotone
    map keeps every row's rank, so thresholds would automate the same decisions."""
    confidence = predictions["intent_confidence"].to_numpy(dtype=float)
    right = (predictions["pred_intent"] == predictions["intent"]).to_numpy(dtype=float)
    halves = np.array_split(np.random.default_rng(seed).permutation(len(confidence)), 2)
    mapped = np.empty_like(confidence)
    for fit, scored in (halves, halves[::-1]):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        mapped[scored] = iso.fit(confidence[fit], right[fit]).predict(confidence[scored])
    return mapped


def top_label_ece(confidence: np.ndarray, right: np.ndarray) -> float:
    """:func:`ece` of a top-label confidence alone: one column, true label 0 when right."""
    return ece(confidence[:, None], np.where(right, 0, 1))


def per_language(run: str) -> list[list[str]]:
    folder = RUNS / run
    metrics = json.loads((folder / "evaluation" / "metrics.json").read_text())
    predictions = pd.read_parquet(folder / "evaluation" / "predictions.parquet")
    mapped = isotonic_confidence(predictions)
    labels = sorted(set(predictions["intent"]) | set(predictions["pred_intent"]))
    rows = []
    for lang in ("nl", "en"):
        in_lang = (predictions["lang"] == lang).to_numpy()
        part = predictions[in_lang]
        if part.empty:
            continue
        y = part["intent"].map(labels.index).to_numpy()
        pred = part["pred_intent"].map(labels.index).to_numpy()
        f1, lo, hi = bootstrap_ci(
            lambda a, b: summary(a, b, labels)["macro_f1"], y, pred, n_boot=500, seed=0
        )
        key = f"test/intent/{lang}"
        uppers = {  # classes with automated decisions only (none: the bound is 1)
            k.rsplit("/", 1)[1]: v
            for k, v in metrics.items()
            if k.startswith(f"{key}/auto_fpr_upper/")
            and metrics.get(f"{key}/n_auto/{k.rsplit('/', 1)[1]}", 0)
        }
        observed = {
            k.rsplit("/", 1)[1]: v
            for k, v in metrics.items()
            if k.startswith(f"{key}/auto_fpr/")
            and metrics.get(f"{key}/n_auto/{k.rsplit('/', 1)[1]}", 0)
        }
        rows.append(
            [
                run,
                lang,
                f"{len(part)}",
                f"{(y == pred).mean():.3f}",
                f"{f1:.3f} [{lo:.3f}, {hi:.3f}]",
                f"{metrics[f'{key}/ece']:.3f} (floor {metrics[f'{key}/ece_if_calibrated']:.3f})",
                f"{top_label_ece(mapped[in_lang], (y == pred)):.3f}",
                f"{metrics[f'{key}/coverage']:.3f}",
                f"{1 - metrics[f'{key}/auto_accuracy']:.3f}",
                f"{sum(v > TARGET for v in observed.values())} / {len(observed)}",
                f"{sum(v > TARGET for v in uppers.values())}",
            ]
        )
    return rows


def paired_rows(run: str) -> list[list[str]]:
    predictions = pd.read_parquet(RUNS / run / "evaluation" / "predictions.parquet")
    labels = sorted(set(predictions["intent"]) | set(predictions["pred_intent"]))
    y = predictions["intent"].map(labels.index).to_numpy()
    pred = predictions["pred_intent"].map(labels.index).to_numpy()
    numbers, table = parity(predictions, y, pred, labels, "nl", "en")
    if not numbers:
        return []
    worst = ", ".join(f"{r.label} ({r.diff:+.2f}, n {r.n})" for r in table.head(5).itertuples())
    return [
        [
            run,
            f"{numbers['n']:.0f}",
            f"{numbers['acc_a']:.3f}",
            f"{numbers['acc_b']:.3f}",
            f"{100 * numbers['diff']:+.1f} [{100 * numbers['diff_lo']:+.1f}, "
            f"{100 * numbers['diff_hi']:+.1f}]",
            f"{numbers['only_a']:.0f} / {numbers['only_b']:.0f}",
            f"{numbers['mcnemar_p']:.2g}",
            worst,
        ]
    ]


def thresholds(run: str) -> list[list[str]]:
    calibration = json.loads((RUNS / run / "calibration.json").read_text())
    head = calibration["heads"]["intent"]
    tables = {"pooled": head["thresholds"], **head.get("language_thresholds", {})}
    return [
        [
            run,
            name,
            ", ".join(f"{k} {v}" for k, v in sorted(Counter(e["how"] for e in t.values()).items())),
        ]
        for name, t in tables.items()
    ]


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> None:
    runs = sys.argv[1:] or sorted(
        p.name for p in RUNS.iterdir() if (p / "evaluation" / "metrics.json").is_file()
    )
    print(
        markdown(
            ["run", "lang", "test", "accuracy", "macro-F1 [95% CI]", "ECE (noise floor)",
             "ECE, isotonic map (research)", "coverage", "wrong automated",
             "classes > 5% (observed)", "classes upper bound > 5%"],
            [row for run in runs for row in per_language(run)],
        )
    )  # fmt: skip
    print()
    print(
        markdown(
            ["run", "pairs", "acc nl", "acc en", "nl − en, points [95% CI]",
             "only nl / only en right", "McNemar p", "intents where Dutch loses most (diff, n)"],
            [row for run in runs for row in paired_rows(run)],
        )
    )  # fmt: skip
    print()
    print(
        markdown(
            ["run", "threshold table", "classes by how their threshold was set"],
            [row for run in runs for row in thresholds(run)],
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
