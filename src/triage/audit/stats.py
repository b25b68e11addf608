"""Estimates from a reviewed audit sample: plain functions on arrays (numpy, scikit-learn).

Two estimates of every rate, as the sampling design of :mod:`triage.audit.sample` allows:

* **control**: the reviewed items of the control slice, a simple random sample of the period,
  counted equally; unbiased, Wilson interval;
* **weighted**: every reviewed item weighted by ``1 / pi`` (its inclusion probability), as the
  Hajek ratio ``sum(w * y) / sum(w)`` over the domain (e.g. the automated decisions of one
  class). The interval is Wilson's at Kish's effective sample size
  ``n_eff = sum(w)^2 / sum(w^2)``, the usual approximation for unequal weights.

Unreviewed and "unclear" items are left out of both (missing at random within a stratum).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score

from triage.modeling.metrics import wilson_interval


def rate(hits: np.ndarray, alpha: float = 0.05) -> dict[str, float]:
    """Share of True in ``hits`` with its Wilson interval; NaN estimate for no rows."""
    hits = np.asarray(hits, dtype=bool)
    n, k = len(hits), int(hits.sum())
    lower, upper = wilson_interval(k, n, alpha)
    return {
        "estimate": k / n if n else math.nan,
        "lower": lower,
        "upper": upper,
        "n": float(n),
        "n_eff": float(n),
    }


def weighted_rate(hits: np.ndarray, weights: np.ndarray, alpha: float = 0.05) -> dict[str, float]:
    """Hajek estimate of a share with inverse-probability ``weights`` and a Wilson interval at
    Kish's effective sample size (``k = estimate * n_eff``, fractional); NaN for no rows."""
    hits = np.asarray(hits, dtype=bool)
    weights = np.asarray(weights, dtype=float)
    if hits.shape != weights.shape:
        raise ValueError("hits and weights must have the same shape")
    if not len(hits):
        return {"estimate": math.nan, "lower": 0.0, "upper": 1.0, "n": 0.0, "n_eff": 0.0}
    if (weights <= 0).any():
        raise ValueError("weights must be positive (1 / inclusion probability)")
    estimate = float((weights * hits).sum() / weights.sum())
    n_eff = float(weights.sum() ** 2 / (weights**2).sum())
    # wilson_interval's formula holds for a fractional count and size (only k/n and n enter)
    lower, upper = wilson_interval(estimate * n_eff, n_eff, alpha)  # type: ignore[arg-type]
    return {
        "estimate": estimate,
        "lower": lower,
        "upper": upper,
        "n": float(len(hits)),
        "n_eff": n_eff,
    }


def kappa(first: Sequence[Any], second: Sequence[Any]) -> float:
    """Cohen's kappa of two reviewers' labels on the same items: ``(p_o - p_e) / (1 - p_e)``
    with ``p_o`` the observed agreement and ``p_e`` the agreement expected from each reviewer's
    label shares (``sklearn.metrics.cohen_kappa_score``). 1.0 when they agree on every item
    although all items share one label (kappa is 0/0 there); NaN for no items."""
    if len(first) != len(second):
        raise ValueError("both reviewers must label the same items")
    if not len(first):
        return math.nan
    if len({*first, *second}) == 1:
        return 1.0  # scikit-learn warns and returns its replace_undefined_by here
    return float(cohen_kappa_score(first, second))


def shares(values: Sequence[Any], categories: Sequence[Any], weights: np.ndarray | None = None):
    """The (weighted) share of each category among ``values``, in ``categories`` order."""
    values = list(values)
    weights = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=float)
    total = float(weights.sum())
    return np.array(
        [
            float(weights[[v == c for v in values]].sum()) / total if total else 0.0
            for c in categories
        ]
    )


def psi(reference: np.ndarray, current: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index ``sum((c - r) * ln(c / r))`` of two share vectors over the
    same categories (shares clipped to ``eps`` so an empty category counts, not explodes).
    Rule of thumb: < 0.1 stable, 0.1 to 0.25 moderate shift, > 0.25 a large one."""
    r = np.clip(np.asarray(reference, dtype=float), eps, None)
    c = np.clip(np.asarray(current, dtype=float), eps, None)
    r, c = r / r.sum(), c / c.sum()
    return float(((c - r) * np.log(c / r)).sum())


def histogram_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each bin of ``edges`` (the last bin includes its right edge)."""
    values = np.asarray(values, dtype=float)
    counts, _ = np.histogram(values, bins=edges)
    return counts / counts.sum() if counts.sum() else counts.astype(float)


def verdict(
    estimate: dict[str, float], target: float, direction: str, percent: bool = True
) -> tuple[str, str]:
    """Judge an estimate with interval against a target.

    Args:
        estimate: ``estimate``, ``lower``, ``upper`` (from :func:`rate`/:func:`weighted_rate`).
        target: the threshold.
        direction: ``"max"`` (the rate must stay at or below the target, e.g. an FPR) or
            ``"min"`` (at or above, e.g. accuracy).
        percent: write the numbers as percentages (rates) or as plain decimals (kappa, ECE).

    Returns:
        ``(status, sentence)``: ``met`` (the whole interval is on the right side), ``not met``
        (the estimate itself is on the wrong side), ``uncertain`` (the estimate is on the right
        side, the interval crosses the target: more reviews would settle it), or ``no data``.
    """
    value, lower, upper = estimate["estimate"], estimate["lower"], estimate["upper"]
    if value is None or math.isnan(value):
        return "no data", "no reviewed items"
    fmt = "{:.1%}" if percent else "{:.3f}"
    shown = (
        f"{fmt.format(value)} (95% CI {fmt.format(lower)} to {fmt.format(upper)}) "
        f"against {fmt.format(target)}"
    )
    if direction == "max":
        if upper <= target:
            return "met", f"{shown}: below the target"
        if value > target:
            return "not met", f"{shown}: above the target"
        return "uncertain", f"{shown}: within the target, but the interval crosses it"
    if direction == "min":
        if lower >= target:
            return "met", f"{shown}: above the target"
        if value < target:
            return "not met", f"{shown}: below the target"
        return "uncertain", f"{shown}: meets the target, but the interval crosses it"
    raise ValueError(f"direction must be 'max' or 'min', got {direction!r}")
