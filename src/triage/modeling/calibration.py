"""Confidence calibration and automation thresholds, as plain numpy functions.

Temperature scaling divides a head's logits by one number ``T`` fitted to minimise the negative
log-likelihood on held-out data: it changes how confident the model is, never what it predicts.
A threshold per class then decides which predictions are safe to act on automatically: the
lowest probability at which the share of wrong automated decisions for that class (false
positives among automated decisions) stays under the target. Where a language has enough calib
rows it gets its own table, fitted the same way on its rows alone, so that the target holds in
each language and not only on the pooled mix.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

from triage.errors import ConfigError, MissingInputError
from triage.io import write_json
from triage.modeling.metrics import coverage_at, wilson_interval


def softmax(logits: np.ndarray, temperature: float | np.ndarray = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` (a scalar or one value per row)."""
    t = np.asarray(temperature, dtype=np.float64)
    z = np.asarray(logits, dtype=np.float64) / (t[:, None] if t.ndim == 1 else t)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels at ``temperature``."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(log_norm - z[np.arange(len(y)), y]))


def fit_temperature(logits: np.ndarray, y: np.ndarray, lo: float = 0.05, hi: float = 20.0) -> float:
    """The temperature in ``[lo, hi]`` that minimises the NLL (bounded Brent search on
    ``log T``, scipy's ``minimize_scalar``).

    The NLL is convex in ``1/T`` (log-sum-exp of a linear function minus a linear term), so it
    is unimodal in ``log T`` and a bounded scalar search on ``log T`` finds the minimum.
    """
    if len(y) == 0:
        return 1.0
    result = minimize_scalar(
        lambda log_t: _nll(logits, y, math.exp(log_t)),
        bounds=(math.log(lo), math.log(hi)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return float(math.exp(result.x))


def fit_language_temperatures(
    logits: np.ndarray,
    y: np.ndarray,
    langs: np.ndarray,
    global_t: float,
    min_rows: int,
    seed: int = 0,
) -> dict[str, dict[str, float | bool | str]]:
    """Decide per language whether its own temperature beats the global one.

    A language with at least ``min_rows`` rows gets a two-fold check: its rows are split in two,
    a temperature is fitted on each half and scored on the other, against the global temperature
    on the same halves. It keeps its own temperature (fitted on all its rows) only when the
    held-out NLL is lower; otherwise the global one applies. On the data it was fitted on a
    per-language temperature always "helps", so only held-out rows can tell.

    Returns:
        Per language: ``temperature`` (the one to use), ``own`` (kept its own?), and ``why``.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, float | bool | str]] = {}
    for lang in sorted(set(langs)):
        rows = np.flatnonzero(langs == lang)
        if len(rows) < min_rows:
            out[lang] = {
                "temperature": global_t,
                "own": False,
                "why": f"{len(rows)} calib rows < {min_rows}: global temperature",
            }
            continue
        rows = rows[rng.permutation(len(rows))]
        halves = (rows[: len(rows) // 2], rows[len(rows) // 2 :])
        own_nll = global_nll = 0.0
        for fit_rows, test_rows in (halves, halves[::-1]):
            t = fit_temperature(logits[fit_rows], y[fit_rows])
            own_nll += _nll(logits[test_rows], y[test_rows], t) / 2
            global_nll += _nll(logits[test_rows], y[test_rows], global_t) / 2
        if own_nll < global_nll:
            t = fit_temperature(logits[rows], y[rows])
            out[lang] = {
                "temperature": t,
                "own": True,
                "why": f"held-out NLL {own_nll:.4f} < {global_nll:.4f} with the global",
            }
        else:
            out[lang] = {
                "temperature": global_t,
                "own": False,
                "why": f"held-out NLL {own_nll:.4f} >= {global_nll:.4f} with the global",
            }
    return out


def lowest_safe_threshold(
    confidence: np.ndarray, correct: np.ndarray, target: float, bound: str = "upper"
) -> tuple[float, float, int]:
    """The lowest confidence ``t`` such that the rows with confidence >= t are wrong at most
    ``target`` of the time.

    ``bound="point"`` compares the observed share of wrong rows with the target;
    ``bound="upper"`` compares its one-sided 95% Wilson upper bound, so a threshold resting on
    few rows must show fewer errors (0 wrong in 52 rows is the least that passes 5%): the
    target then tends to hold on new data too, at the cost of coverage.

    Returns:
        ``(threshold, error_rate, n_decided)`` at that threshold; ``(inf, nan, 0)`` when no
        threshold works (then nothing is decided automatically).
    """
    if bound not in ("point", "upper"):
        raise ConfigError(f"bound must be 'point' or 'upper', got {bound!r}")
    order = np.argsort(-confidence, kind="stable")
    conf, wrong = confidence[order], ~correct[order]
    errors = np.cumsum(wrong)
    counts = np.arange(1, len(conf) + 1)
    # only cut between distinct confidences: tied rows are decided together
    cuts = np.flatnonzero(np.r_[conf[1:] != conf[:-1], True]) if len(conf) else counts[:0]
    if bound == "point":
        rates = errors[cuts] / counts[cuts]
    else:  # two-sided 90% interval = one-sided 95% upper bound
        rates = np.array(
            [wilson_interval(int(errors[m]), int(counts[m]), alpha=0.10)[1] for m in cuts]
        )
    ok = cuts[rates <= target]
    if not len(ok):
        return math.inf, math.nan, 0
    m = ok[-1]
    return float(conf[m]), float(errors[m] / counts[m]), int(counts[m])


def least_passing_decisions(target: float, bound: str = "upper") -> int:
    """The fewest decisions that can pass ``target`` under ``bound`` at all: 1 for the point
    rule; for the upper bound, the smallest ``n`` whose one-sided 95% Wilson upper bound with 0
    errors is at most ``target`` (52 at 5%). A class with fewer can never get a threshold of its
    own, however good it is."""
    if bound == "point":
        return 1
    n = 1
    while wilson_interval(0, n, alpha=0.10)[1] > target:
        n += 1
        if n > 1_000_000:
            raise ConfigError(f"no number of decisions passes target {target} under {bound!r}")
    return n


def choose_thresholds(
    probs: np.ndarray,
    y: np.ndarray,
    labels: list[str],
    target: float,
    min_decisions: int,
    margin: float = 0.0,
    bound: str = "upper",
) -> dict[str, dict]:
    """Per class, the lowest threshold that keeps wrong automated decisions under ``target``.

    A class with fewer than ``min_decisions`` calib rows predicted as it (after the margin
    rule), or fewer than could ever pass the bound (:func:`least_passing_decisions`: 52 at 5%
    under the upper bound), gets the global threshold, fitted the same way on all classes
    pooled, and says so.
    Its own few rows can still raise it, never lower it: where more than ``target`` of the
    class's calib decisions at the global threshold are wrong (observed, too few rows for a
    bound), the threshold rises to the lowest one at which they are not (``raised``; ``never``
    when none is). ``bound`` is :func:`lowest_safe_threshold`'s: the observed error or its
    upper bound.

    Returns:
        Per label: ``threshold`` (``inf`` = never automatic), ``how`` (``class``, ``global``,
        ``raised`` or ``never``), ``why``, and the calib numbers it rests on.
    """
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    keep = coverage_at(probs, np.zeros(probs.shape[1]), margin)  # the margin rule
    correct = pred == y
    g_t, g_err, g_n = lowest_safe_threshold(conf[keep], correct[keep], target, bound)
    needed = max(min_decisions, least_passing_decisions(target, bound))
    out = {}
    for k, label in enumerate(labels):
        rows = keep & (pred == k)
        n = int(rows.sum())
        if n < needed:
            why = (
                f"{n} calib predictions < {needed}: global threshold "
                f"(pooled error {g_err:.3f} on {g_n} decisions)"
            )
            above = rows & (conf >= g_t)
            wrong = int((above & ~correct).sum())
            t = g_t
            if wrong > target * above.sum():
                t = lowest_safe_threshold(conf[above], correct[above], target, "point")[0]
                why += f", raised: {wrong} of its {int(above.sum())} decisions there were wrong"
            how = "global" if t == g_t else "raised" if math.isfinite(t) else "never"
            out[label] = {"threshold": t, "how": how, "n_predicted": n, "why": why}
            continue
        t, err, m = lowest_safe_threshold(conf[rows], correct[rows], target, bound)
        how = "class" if math.isfinite(t) else "never"
        why = (
            f"error {err:.3f} on {m} of {n} calib predictions"
            if how == "class"
            else f"no threshold keeps the error under {target} on {n} calib predictions"
        )
        out[label] = {"threshold": t, "how": how, "n_predicted": n, "why": why}
    return out


def row_thresholds(head: dict, labels: list[str], langs: np.ndarray) -> np.ndarray:
    """``(n, k)`` thresholds of one head (``calibration.json``'s entry): per row, its
    language's own table where calibrate fitted one (``language_thresholds``), else the
    pooled one."""

    def table(entries: dict) -> np.ndarray:
        return np.array([entries[label]["threshold"] for label in labels], dtype=np.float64)

    pooled = table(head["thresholds"])
    by_lang = {lang: table(v) for lang, v in head.get("language_thresholds", {}).items()}
    return np.array([by_lang.get(lang, pooled) for lang in langs]).reshape(len(langs), len(labels))


def calibrated_probs(logits: np.ndarray, langs: np.ndarray, head: dict) -> np.ndarray:
    """Probabilities of one head with its calibration (``calibration.json``'s entry) applied:
    each row divided by its language's temperature, or the global one."""
    by_lang = {lang: v["temperature"] for lang, v in head.get("languages", {}).items()}
    temps = np.array([by_lang.get(lang, head["temperature"]) for lang in langs], dtype=np.float64)
    return softmax(logits, temps)


def save_calibration(path: Path, calibration: dict) -> None:
    """Write ``calibration.json`` atomically; an infinite threshold (never automatic) is null."""

    def safe(obj):
        if isinstance(obj, dict):
            return {k: safe(v) for k, v in obj.items()}
        if isinstance(obj, float) and not math.isfinite(obj):
            return None
        return obj

    write_json(path, safe(calibration))


def load_calibration(path: Path) -> dict:
    """Read ``calibration.json`` back, null thresholds as ``inf``."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path} not found: run `triage calibrate` first")
    calibration = json.loads(path.read_text(encoding="utf-8"))
    for head in calibration["heads"].values():
        for table in [head["thresholds"], *head.get("language_thresholds", {}).values()]:
            for entry in table.values():
                if entry["threshold"] is None:
                    entry["threshold"] = math.inf
    return calibration
