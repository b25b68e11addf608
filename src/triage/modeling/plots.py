"""Evaluation figures as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works on servers and in CI
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from triage.modeling.metrics import confusion_matrix


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reliability(bins: pd.DataFrame, path: Path, head: str) -> Path:
    """Accuracy against confidence per bin, with the diagonal of perfect calibration."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    full = bins.dropna(subset=["accuracy"])
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    ax.bar(
        (full["lo"] + full["hi"]) / 2,
        full["accuracy"],
        width=full["hi"] - full["lo"],
        alpha=0.6,
        edgecolor="black",
        label="accuracy",
    )
    ax.plot(full["confidence"], full["accuracy"], "o-", color="C3", label="per bin")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="confidence",
        ylabel="accuracy",
        title=f"{head}: reliability",
    )
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str], path: Path) -> Path:
    """Row-normalised confusion matrix with counts."""
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    norm = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = 2 + 0.45 * len(labels)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for i, j in zip(*np.nonzero(matrix), strict=True):
        ax.text(
            j,
            i,
            matrix[i, j],
            ha="center",
            va="center",
            fontsize=7,
            color="white" if norm[i, j] > 0.5 else "black",
        )
    ax.set(xlabel="predicted", ylabel="true")
    return _save(fig, path)


def risk_coverage(curve: pd.DataFrame, path: Path, head: str) -> Path:
    """Error rate among the automated messages against the share automated."""
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.plot(curve["coverage"], curve["risk"], drawstyle="steps-post")
    ax.set(
        xlim=(0, 1),
        ylim=(0, max(0.05, float(curve["risk"].max()) * 1.1)),
        xlabel="coverage (share decided automatically)",
        ylabel="risk (error rate)",
        title=f"{head}: risk-coverage",
    )
    return _save(fig, path)


def per_language(
    metrics: dict[str, float], split: str, head: str, langs: list[str], path: Path
) -> Path:
    """Macro-F1, accuracy and coverage per language, side by side."""
    names = ["macro_f1", "accuracy", "coverage"]
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    width = 0.8 / max(len(langs), 1)
    for i, lang in enumerate(langs):
        values = [metrics.get(f"{split}/{head}/{lang}/{n}", np.nan) for n in names]
        ax.bar(np.arange(len(names)) + i * width, values, width, label=lang)
    ax.set_xticks(np.arange(len(names)) + width * (len(langs) - 1) / 2, names)
    ax.set(ylim=(0, 1), title=f"{head}: per language")
    ax.legend(fontsize=8)
    return _save(fig, path)
