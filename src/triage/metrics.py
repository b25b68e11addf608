"""Classification metrics as plain numpy functions on label-id arrays.

Used for PyTorch and (later) ONNX outputs alike. ``y_true`` and ``y_pred`` are integer arrays of
label ids in ``0..n_classes-1``; rows without a true label must be removed by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``C[i, j]`` = number of rows of true class ``i`` predicted as ``j``."""
    y_true, y_pred = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def per_class(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """Per-class precision, recall, F1, one-vs-rest false-positive rate and support.

    The false-positive rate of class ``k`` is the share of rows whose true class is not ``k``
    that were predicted as ``k``: how often an automated action for ``k`` hits the wrong message.
    Undefined ratios (no predictions, no support) are 0.
    """
    matrix = confusion_matrix(y_true, y_pred, n_classes)
    tp = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    support = matrix.sum(axis=1).astype(float)
    negatives = matrix.sum() - support
    fp = predicted - tp
    precision = _ratio(tp, predicted)
    recall = _ratio(tp, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fpr": _ratio(fp, negatives),
        "support": support.astype(int),
    }


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def summary(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict[str, float]:
    """Headline numbers for one head: accuracy, macro-F1 (over classes present in ``y_true`` or
    ``y_pred``), the largest per-class FPR and each class's FPR as ``fpr/<label>``."""
    stats = per_class(y_true, y_pred, len(labels))
    present = (stats["support"] > 0) | (
        np.bincount(np.asarray(y_pred, dtype=int), minlength=len(labels)) > 0
    )
    out = {
        "n": float(len(y_true)),
        "accuracy": float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))
        if len(y_true)
        else 0.0,
        "macro_f1": float(stats["f1"][present].mean()) if present.any() else 0.0,
        "fpr_max": float(stats["fpr"].max()) if len(labels) else 0.0,
    }
    out.update({f"fpr/{label}": float(v) for label, v in zip(labels, stats["fpr"], strict=True)})
    return out


def score(
    probs: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    langs: np.ndarray,
    labels: dict[str, list[str]],
    split: str,
    missing: int = -100,
) -> dict[str, float]:
    """:func:`summary` per head as ``{split}/{head}/{metric}``, and per language as
    ``{split}/{head}/{lang}/{metric}``; rows whose target is ``missing`` are left out."""
    out: dict[str, float] = {}
    for head, names in labels.items():
        known = targets[head] != missing
        pred = probs[head].argmax(axis=1)
        for key, value in summary(targets[head][known], pred[known], names).items():
            out[f"{split}/{head}/{key}"] = value
        for lang in sorted(set(langs[known])):
            mask = known & (langs == lang)
            for key, value in summary(targets[head][mask], pred[mask], names).items():
                out[f"{split}/{head}/{lang}/{key}"] = value
    return out
