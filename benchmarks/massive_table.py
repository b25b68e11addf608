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

import pandas as pd
from loopback import ROOT

from triage.modeling.metrics import bootstrap_ci, summary
from triage.modeling.parity import parity

RUNS = ROOT / "models" / "massive"
TARGET = 0.05


def per_language(run: str) -> list[list[str]]:
    folder = RUNS / run
    metrics = json.loads((folder / "evaluation" / "metrics.json").read_text())
    predictions = pd.read_parquet(folder / "evaluation" / "predictions.parquet")
    labels = sorted(set(predictions["intent"]) | set(predictions["pred_intent"]))
    rows = []
    for lang in ("nl", "en"):
        part = predictions[predictions["lang"] == lang]
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
             "coverage", "wrong automated", "classes > 5% (observed)", "classes upper bound > 5%"],
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
