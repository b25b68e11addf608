"""Language parity on identical messages: rows that share a ``pair_id`` are one message in
several languages (parallel data, or a team's translated messages). For two languages, the
accuracy difference on the pairs (:func:`triage.modeling.metrics.paired_accuracy`) and the
classes where the first language loses most, with examples."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from triage.modeling.metrics import paired_accuracy
from triage.schema import MISSING_LABEL

#: examples kept per class in the parity table (messages the first language gets wrong and the
#: second right)
EXAMPLES = 3


def pairs(frame: pd.DataFrame, lang_a: str, lang_b: str) -> pd.DataFrame:
    """The messages present in both languages: one row per ``pair_id`` with the row positions
    ``pos_a`` and ``pos_b`` in ``frame`` (the first row where a language repeats a pair)."""
    if "pair_id" not in frame:
        return pd.DataFrame(columns=["pair_id", "pos_a", "pos_b"])
    rows = pd.DataFrame(
        {"pair_id": frame["pair_id"].to_numpy(), "lang": frame["lang"].to_numpy()}
    ).assign(pos=np.arange(len(frame)))
    rows = rows[rows["pair_id"].notna()].drop_duplicates(["pair_id", "lang"])
    a = rows[rows["lang"] == lang_a].set_index("pair_id")["pos"].rename("pos_a")
    b = rows[rows["lang"] == lang_b].set_index("pair_id")["pos"].rename("pos_b")
    return pd.concat([a, b], axis=1, join="inner").reset_index()


def language_pairs(frame: pd.DataFrame, languages: list[str]) -> list[tuple[str, str]]:
    """The ordered language pairs (in ``languages``' order: ``(nl, en)`` for ``[nl, en]``)
    that share at least one ``pair_id`` in ``frame``."""
    return [(a, b) for a, b in itertools.combinations(languages, 2) if len(pairs(frame, a, b))]


def parity(
    frame: pd.DataFrame,
    y: np.ndarray,
    pred: np.ndarray,
    names: list[str],
    lang_a: str,
    lang_b: str,
    seed: int = 0,
) -> tuple[dict[str, float], pd.DataFrame]:
    """``lang_a`` against ``lang_b`` on the messages both have (and both with a true label).

    Args:
        frame: the evaluated rows (``pair_id``, ``lang``, ``text``).
        y: true label ids (``MISSING_LABEL`` where missing); pred: predicted label ids.
        names: the label names.

    Returns:
        ``(numbers, per class)``: :func:`paired_accuracy`'s numbers (``acc_a`` is ``lang_a``'s);
        and per true class ``n``, both accuracies, ``diff`` and up to ``EXAMPLES`` messages
        that ``lang_a`` gets wrong and ``lang_b`` right, sorted by ``diff`` (worst first).
    """
    matched = pairs(frame, lang_a, lang_b)
    pos_a, pos_b = matched["pos_a"].to_numpy(int), matched["pos_b"].to_numpy(int)
    labelled = (y[pos_a] != MISSING_LABEL) & (y[pos_b] != MISSING_LABEL)
    pos_a, pos_b = pos_a[labelled], pos_b[labelled]
    if not len(pos_a):
        return {}, pd.DataFrame()
    right_a, right_b = pred[pos_a] == y[pos_a], pred[pos_b] == y[pos_b]
    numbers = paired_accuracy(right_a, right_b, seed=seed)
    texts = frame["text"].to_numpy()
    table = []
    for label in np.unique(y[pos_a]):
        rows = y[pos_a] == label
        lost = np.flatnonzero(rows & ~right_a & right_b)[:EXAMPLES]
        table.append(
            {
                "label": names[label],
                "n": int(rows.sum()),
                f"acc_{lang_a}": float(right_a[rows].mean()),
                f"acc_{lang_b}": float(right_b[rows].mean()),
                "diff": float(right_a[rows].mean() - right_b[rows].mean()),
                "examples": " | ".join(
                    f"{texts[pos_a[i]]} -> {names[pred[pos_a[i]]]} ({texts[pos_b[i]]})"
                    for i in lost
                ),
            }
        )
    per_class = pd.DataFrame(table).sort_values(["diff", "n"], ascending=[True, False])
    return numbers, per_class.reset_index(drop=True)
