"""The real-text sentiment table (issue 16), re-computed from MLflow: one row per training run,
the authored test per language beside each real-text set of `evaluate.extra`.

    .venv/bin/python benchmarks/sentiment_table.py       # every sentiment-* and student-* run
    .venv/bin/python benchmarks/sentiment_table.py sentiment-xed_s13 default=<run id>

Runs are named by `benchmarks/sentiment.sh` (``sentiment-<name>``), `benchmarks/student.sh`
(``student-<name>``); the latest run of a name is shown; ``label=<run id>`` adds any other run
(e.g. the default model's, ``models/checkpoint/run_id``) evaluated with the same sets. Runs
whose names differ only in a last ``-s<seed>`` also get a row of their mean ± standard
deviation over seeds. A run's latest value of each metric is the one shown (MLflow writes
`test@authored` as `test_authored`).
"""

from __future__ import annotations

import re
import statistics
import sys

import mlflow
from loopback import ROOT

#: the run names of benchmarks/sentiment.sh and benchmarks/student.sh
PREFIXES = ("sentiment", "student")
SETS = {"absa_nl": "ABSA nl", "tweeteval_sentiment_val": "tweets en"}
COLUMNS = [
    ("authored sentiment nl", "test_authored/sentiment/nl/macro_f1"),
    ("authored sentiment en", "test_authored/sentiment/en/macro_f1"),
    ("authored intent nl", "test_authored/intent/nl/macro_f1"),
    ("authored intent en", "test_authored/intent/en/macro_f1"),
    ("round 3 intent", "test_authored_round3/intent/macro_f1"),
    ("intent coverage", "test/intent/coverage"),
]
for name, short in SETS.items():
    key = f"extra/{name}/sentiment"
    COLUMNS += [
        (f"{short} macro-F1", f"{key}/macro_f1"),
        (f"{short} ECE", f"{key}/ece"),
        (f"{short} right at ≥ 0.9 (share)", (f"{key}/accuracy_at_0.9", f"{key}/share_at_0.9")),
        (
            f"{short} right at ≥ 0.9, far out to review (share)",
            (f"{key}/accuracy_at_0.9_near", f"{key}/share_at_0.9_near"),
        ),
        (f"{short} far out", f"extra/{name}/novelty/far_share"),
    ]


def cell(metrics: dict[str, float], key: str | tuple[str, str]) -> str:
    if isinstance(key, tuple):
        value, share = (metrics.get(k) for k in key)
        return "–" if value is None else f"{value:.3f} ({share:.2f})"
    value = metrics.get(key)
    return "–" if value is None else f"{value:.3f}"


def spread(runs: list[dict[str, float]], key: str | tuple[str, str]) -> str:
    """Mean ± sample standard deviation over seeds (of the value, for a (value, share) pair)."""
    values = [m.get(key[0] if isinstance(key, tuple) else key) for m in runs]
    if any(v is None for v in values):
        return "–"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(argv: list[str], prefixes: tuple[str, ...] = PREFIXES, columns: list = COLUMNS) -> None:
    """Print the table of the runs named ``<prefix>-...`` (or those ``argv`` names)."""
    mlflow.set_tracking_uri(f"sqlite:///{ROOT / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    named = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in argv if "=" in a}
    wanted = [a for a in argv if "=" not in a]
    runs = [
        run
        for prefix in prefixes
        for run in client.search_runs(
            [e.experiment_id for e in client.search_experiments()],
            f"tags.mlflow.runName LIKE '{prefix}-%'",
            order_by=["attributes.start_time ASC"],
        )
    ]
    chosen = {r.info.run_name: r for r in runs if not wanted or r.info.run_name in wanted}
    chosen.update({label: client.get_run(run_id) for label, run_id in named.items()})
    print("| run | " + " | ".join(c for c, _ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    seeds: dict[str, list[dict[str, float]]] = {}
    for label, run in chosen.items():
        metrics = run.data.metrics
        print(f"| {label} | " + " | ".join(cell(metrics, k) for _, k in columns) + " |")
        seeds.setdefault(re.sub(r"-s\d+$", "", label), []).append(metrics)
    for group, runs in seeds.items():
        if len(runs) > 1:
            row = " | ".join(spread(runs, k) for _, k in columns)
            print(f"| {group}, mean of {len(runs)} seeds | {row} |")


if __name__ == "__main__":
    main(sys.argv[1:])
