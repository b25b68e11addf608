"""The export gates: the fp32 graph against PyTorch (parity), a smaller bundle against the fp32
graph (int8, trimmed vocabulary), and the chosen bundle's own numbers."""

from __future__ import annotations

from typing import Any

import numpy as np

from triage.config import ExportGateConfig
from triage.modeling.metrics import (
    automation_report,
    coverage_at,
    ece,
    language_slices,
    per_class,
    summary,
)
from triage.schema import MISSING_LABEL


def changed_decisions(
    reference: np.ndarray, candidate: np.ndarray, thresholds: np.ndarray, margin: float
) -> np.ndarray:
    """Per message, whether its served decision differs: automated by one graph and sent to
    review by the other, or automated by both with different labels. A top label that moves
    between two classes below their thresholds (a near tie) changes no decision."""
    auto_ref = coverage_at(reference, thresholds, margin)
    auto_cand = coverage_at(candidate, thresholds, margin)
    relabelled = auto_ref & auto_cand & (reference.argmax(1) != candidate.argmax(1))
    return (auto_ref != auto_cand) | relabelled


def parity(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    thresholds: dict[str, np.ndarray],
    margin: float,
) -> dict[str, float]:
    """How far the exported graph is from PyTorch, per head: max absolute difference,
    top-label agreement and the number of rows whose threshold decision differs."""
    out: dict[str, float] = {}
    for head, ref in reference.items():
        cand = candidate[head]
        out[f"{head}/max_abs_diff"] = float(np.abs(ref - cand).max())
        out[f"{head}/top1_agreement"] = float((ref.argmax(1) == cand.argmax(1)).mean())
        out[f"{head}/decision_mismatches"] = float(
            changed_decisions(ref, cand, thresholds[head], margin).sum()
        )
    return out


def parity_failures(numbers: dict[str, float], atol: float) -> list[str]:
    """The :func:`parity` numbers that break the gate (empty: it passes): a probability further
    than ``atol``, a different top label, or a different threshold decision."""
    return [
        f"{k} = {v:g}"
        for k, v in numbers.items()
        if (k.endswith("max_abs_diff") and v > atol)
        or (k.endswith("top1_agreement") and v < 1.0)
        or (k.endswith("decision_mismatches") and v > 0)
    ]


def quality(probs: np.ndarray, y: np.ndarray, labels: list[str], n_bins: int) -> dict[str, Any]:
    """Macro-F1, per-class one-vs-rest FPR and ECE on the labelled rows."""
    known = y != MISSING_LABEL
    p, t = probs[known], y[known]
    return {
        "macro_f1": summary(t, p.argmax(1), labels)["macro_f1"],
        "fpr": per_class(t, p.argmax(1), len(labels))["fpr"],
        "ece": ece(p, t, n_bins),
    }


def gate(
    reference: dict[str, np.ndarray],
    candidate: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    labels: dict[str, list[str]],
    limits: ExportGateConfig,
    n_bins: int,
    thresholds: dict[str, np.ndarray],
    margin: float,
) -> tuple[dict[str, float], list[str]]:
    """A smaller bundle against the fp32 graph on the same messages, served with
    ``thresholds`` (per message) and ``margin``.

    Returns:
        The numbers per head (``{head}/top1_agreement``, ``macro_f1_drop``, ``fpr_rise_max``,
        ``ece_rise``; drops and rises in points of 1.0; and, reported but not a limit,
        ``decisions_changed``, the share of :func:`changed_decisions`) and the reasons it
        fails (empty: pass).
    """
    numbers: dict[str, float] = {}
    reasons: list[str] = []
    for head, names in labels.items():
        numbers[f"{head}/decisions_changed"] = float(
            changed_decisions(reference[head], candidate[head], thresholds[head], margin).mean()
        )
        agreement = float((reference[head].argmax(1) == candidate[head].argmax(1)).mean())
        checks = {"top1_agreement": (agreement, lambda v: v >= limits.top1_agreement)}
        rise = np.zeros(len(names))
        if (targets[head] != MISSING_LABEL).any():  # a real-text set may label one head only
            ref = quality(reference[head], targets[head], names, n_bins)
            cand = quality(candidate[head], targets[head], names, n_bins)
            rise = cand["fpr"] - ref["fpr"]
            checks |= {
                "macro_f1_drop": (
                    ref["macro_f1"] - cand["macro_f1"],
                    lambda v: v <= limits.macro_f1_drop,
                ),
                "fpr_rise_max": (float(rise.max()), lambda v: v <= limits.fpr_rise),
                "ece_rise": (cand["ece"] - ref["ece"], lambda v: v <= limits.ece_rise),
            }
        for name, (value, ok) in checks.items():
            numbers[f"{head}/{name}"] = value
            if not ok(value):
                worst = f" ({names[int(rise.argmax())]})" if name == "fpr_rise_max" else ""
                reasons.append(f"{head} {name} {value:.4f}{worst} beyond the limit")
    return numbers, reasons


def bundle_metrics(
    probs: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    langs: np.ndarray,
    labels: dict[str, list[str]],
    thresholds: dict[str, np.ndarray],
    margin: float,
    n_bins: int,
) -> dict[str, float]:
    """The chosen bundle's own numbers on the gate split, overall and per language."""
    out: dict[str, float] = {}
    for head, names in labels.items():
        known = targets[head] != MISSING_LABEL
        head_probs, head_targets = probs[head][known], targets[head][known]
        head_thresholds = thresholds[head][known]
        for lang, rows in language_slices(langs[known]):
            p, t = head_probs[rows], head_targets[rows]
            key = head if lang is None else f"{head}/{lang}"
            out[f"{key}/macro_f1"] = summary(t, p.argmax(1), names)["macro_f1"]
            out[f"{key}/ece"] = ece(p, t, n_bins)
            auto = automation_report(p, t, head_thresholds[rows], names, margin)
            out[f"{key}/coverage"] = auto["coverage"]
            out[f"{key}/auto_fpr_max"] = auto["auto_fpr_max"]
    return out


def fmt(numbers: dict[str, float]) -> str:
    """Gate numbers in one line, for the log and the model card."""
    return ", ".join(f"{k} {v:.4g}" for k, v in numbers.items())
