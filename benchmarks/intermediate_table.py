"""Intermediate training on MASSIVE against the default start (issue 20, item 5), from MLflow:
one row per run of `benchmarks/intermediate.sh` and the mean ± standard deviation over seeds,
on the authored test split (every round) per language, round 3's Dutch test messages alone,
and the real-text sentiment sets.

    .venv/bin/python benchmarks/intermediate_table.py \\
        intermediate-default-s13=$(cat models/checkpoint/run_id)

(the default model of `make run` is seed 13 of the `default` start; name its run as above.)
"""

from __future__ import annotations

import sys

from sentiment_table import main

COLUMNS = [
    ("intent nl", "test/intent/nl/macro_f1"),
    ("intent en", "test/intent/en/macro_f1"),
    ("sentiment nl", "test/sentiment/nl/macro_f1"),
    ("sentiment en", "test/sentiment/en/macro_f1"),
    ("round 3 intent (nl)", "test_authored_round3/intent/macro_f1"),
    ("round 3 sentiment (nl)", "test_authored_round3/sentiment/macro_f1"),
    ("intent coverage", "test/intent/coverage"),
    ("ABSA nl sentiment", "extra/absa_nl/sentiment/macro_f1"),
    ("tweets en sentiment", "extra/tweeteval_sentiment_val/sentiment/macro_f1"),
]

if __name__ == "__main__":
    main(sys.argv[1:], ("intermediate",), COLUMNS)
