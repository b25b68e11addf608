"""``triage audit-issues``: training rows whose label is probably wrong (confident learning).

Reads the prepared splits (``audit.issues.data_dir``, default the current data's
``data/processed/<name>``; ``audit.issues.splits``, default ``[train]``) and ``labels.json``.
Writes a ranked CSV (``audit.issues.out_file``) and, with ``audit.issues.push=true``, a review
batch of its own (kind ``label_issues``, named ``audit.batch`` or ``issues-<date>``) in the audit
database, where reviewers accept or correct the training label; ``triage audit-export`` then
writes the corrections to the feedback source, which overrides the original rows (the
``feedback`` source comes first in the data config, and deduplication keeps the first copy of a
text).

Per head: out-of-fold probabilities from ``audit.issues.folds``-fold cross-validation of the
TF-IDF baseline pipeline (:func:`triage.modeling.tfidf.make_pipeline`: every row is scored by a
model that never saw it), then ``cleanlab.filter.find_label_issues`` (confident learning: a row
is an issue when its given label falls outside the confident joint's estimate of its true class),
ranked by self-confidence, the out-of-fold probability of the given label, lowest first.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from triage.audit.store import AuditDB
from triage.config import Config
from triage.data.splits import load_labels, load_split
from triage.io import write_atomic
from triage.modeling.tfidf import make_pipeline
from triage.schema import HEADS

log = logging.getLogger(__name__)
COLUMNS = ["rank", "id", "split", "head", "given", "suggested", "self_confidence", "lang", "text"]


def out_of_fold_probs(
    texts: list[str], y: np.ndarray, n_classes: int, folds: int, c: float, seed: int
) -> np.ndarray:
    """``(n, n_classes)`` probabilities, each row from the fold model that did not train on it.

    Classes absent from a fold's training part get probability 0 in that fold.
    """
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y, minlength=n_classes)
    splits = int(min(folds, max(2, counts[counts > 0].min())))
    probs = np.zeros((len(texts), n_classes))
    folder = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    text_arr = np.asarray(texts, dtype=object)
    for train_idx, test_idx in folder.split(text_arr, y):
        model = make_pipeline(c, seed)
        model.fit(text_arr[train_idx].tolist(), y[train_idx])
        probs[np.ix_(test_idx, model.classes_)] = model.predict_proba(text_arr[test_idx].tolist())
    return probs


def find_issues(
    frame: pd.DataFrame, labels: dict[str, list[str]], folds: int, c: float, seed: int
) -> pd.DataFrame:
    """Rows of ``frame`` (schema columns + ``split``) with a likely wrong label, one row per
    (row, head), ranked by self-confidence (lowest first); columns :data:`COLUMNS`."""
    from cleanlab.filter import find_label_issues

    found = []
    for head in HEADS:
        if head not in frame or not labels.get(head):
            continue
        rows = frame[frame[head].isin(labels[head])].reset_index(drop=True)
        present = sorted(set(rows[head]), key=labels[head].index)
        if len(present) < 2 or len(rows) < 10:
            log.warning("%s: too few labelled rows or classes to look for issues", head)
            continue
        index = {label: i for i, label in enumerate(present)}
        y = rows[head].map(index).to_numpy()
        probs = out_of_fold_probs(rows["text"].tolist(), y, len(present), folds, c, seed)
        issues = find_label_issues(y, probs, return_indices_ranked_by="self_confidence")
        for i in issues:
            found.append(
                {
                    "id": rows.at[i, "id"],
                    "split": rows.at[i, "split"],
                    "head": head,
                    "given": rows.at[i, head],
                    "suggested": present[int(probs[i].argmax())],
                    "self_confidence": float(probs[i, y[i]]),
                    "lang": rows.at[i, "lang"],
                    "text": rows.at[i, "text"],
                    "probs": {label: float(probs[i, k]) for label, k in index.items()},
                }
            )
    out = pd.DataFrame(found, columns=[*COLUMNS[1:], "probs"])
    out = out.sort_values("self_confidence", kind="stable").reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


def issue_items(issues: pd.DataFrame, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One review item per flagged row (both heads' findings merged), in rank order: the item
    shows the training labels, the suggestion and the out-of-fold probabilities."""
    by_id = frame.set_index("id")
    items: dict[str, dict[str, Any]] = {}
    for issue in issues.itertuples(index=False):
        row = by_id.loc[issue.id]
        item = items.get(issue.id)
        if item is None:
            item = items[issue.id] = {
                "message_id": issue.id,
                "text": row["text"],
                "lang": row["lang"],
                "channel": row.get("channel"),
                "message_created_at": row.get("created_at"),
                "model_version": "label-issues/tfidf-oof",
                "intent": row["intent"] if isinstance(row["intent"], str) else None,
                "sentiment": row["sentiment"] if isinstance(row["sentiment"], str) else None,
                "reason": "",
                "stratum": "label_issue",
                "in_control": False,
                "inclusion_prob": None,
                "reviews_required": 1,
                "extra": {"split": issue.split, "suggested": {}, "self_confidence": {}},
            }
        item["extra"]["suggested"][issue.head] = issue.suggested
        item["extra"]["self_confidence"][issue.head] = issue.self_confidence
        item[f"{issue.head}_probs"] = issue.probs
        item[f"{issue.head}_prob"] = issue.probs.get(issue.given)
        item["reason"] = "; ".join(
            f"training {h} {item[h]!r} looks wrong (out-of-fold probability "
            f"{item['extra']['self_confidence'][h]:.2f}); suggested {s!r}"
            for h, s in item["extra"]["suggested"].items()
        )
    return list(items.values())


def run(cfg: Config) -> pd.DataFrame:
    """Rank likely label errors, write the CSV, and push them as a batch when asked."""
    icfg = cfg.audit.issues
    frame = pd.concat(
        [load_split(icfg.data_dir, split).assign(split=split) for split in icfg.splits],
        ignore_index=True,
    )
    labels = load_labels(icfg.data_dir)
    issues = find_issues(frame, labels, int(icfg.folds), float(icfg.c), int(icfg.seed))
    if icfg.max_rows is not None:
        issues = issues.head(int(icfg.max_rows))
    csv = issues.drop(columns=["probs"])
    write_atomic(Path(icfg.out_file), lambda p: csv.to_csv(p, index=False))
    log.info("%d likely label issues in %d rows -> %s", len(issues), len(frame), icfg.out_file)
    print(f"{icfg.out_file}: {len(issues)} likely label issues in {len(frame)} rows")
    if icfg.push and len(issues):
        batch_id = cfg.audit.batch or f"issues-{datetime.now(UTC):%Y-%m-%d}"
        db = AuditDB(cfg.audit.db_url)
        try:
            db.create_batch(
                {
                    "id": batch_id,
                    "kind": "label_issues",
                    "population": len(frame),
                    "design": {
                        "method": "cleanlab.filter.find_label_issues on out-of-fold TF-IDF "
                        "probabilities, ranked by self-confidence",
                        "data_dir": str(icfg.data_dir),
                        "splits": list(icfg.splits),
                        "folds": int(icfg.folds),
                        "flagged": len(issues),
                    },
                    "labels": labels,
                },
                issue_items(issues, frame),
            )
        finally:
            db.close()
        print(f"batch {batch_id}: review with `triage audit-serve`")
    return issues
