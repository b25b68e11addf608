"""Classification, calibration and selective-prediction metrics as plain numpy functions.

Used for PyTorch and (later) ONNX outputs alike. ``y_true`` and ``y_pred`` are integer arrays of
label ids in ``0..n_classes-1``; rows without a true label must be removed by the caller.
``probs`` is an ``(n, k)`` array of probabilities whose rows sum to 1; its top label is the
first argmax. As elsewhere here, a metric that is undefined for lack of rows is 0.0.

* Classification: :func:`confusion_matrix`, :func:`per_class`, :func:`summary`, :func:`score`.
* Calibration: :func:`reliability_bins`, :func:`ece`, :func:`mce`, :func:`ece_if_calibrated`,
  :func:`brier`, :func:`nll`.
* Selective prediction (automatic vs. human): :func:`risk_coverage`, :func:`aurc`,
  :func:`coverage_at`, :func:`automation_report`.
* Uncertainty of an estimate: :func:`bootstrap_ci`, :func:`wilson_interval`.
* Two systems (or languages) on the same messages: :func:`paired_accuracy`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist

import numpy as np

from triage.schema import MISSING_LABEL


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


def language_slices(langs: np.ndarray) -> list[tuple[str | None, np.ndarray]]:
    """The rows to score: ``(None, all rows)`` first, then ``(lang, its rows)`` per language in
    sorted order. The per-language scores of training, evaluation and export are cut this way."""
    langs = np.asarray(langs)
    return [(None, np.ones(len(langs), bool))] + [
        (lang, langs == lang) for lang in sorted(set(langs.tolist()))
    ]


def score(
    probs: dict[str, np.ndarray],
    targets: dict[str, np.ndarray],
    langs: np.ndarray,
    labels: dict[str, list[str]],
    split: str,
    missing: int = MISSING_LABEL,
) -> dict[str, float]:
    """:func:`summary` per head as ``{split}/{head}/{metric}``, and per language as
    ``{split}/{head}/{lang}/{metric}``; rows whose target is ``missing`` are left out."""
    out: dict[str, float] = {}
    for head, names in labels.items():
        known = targets[head] != missing
        if not known.any():  # e.g. out-of-scope rows, or a source with only the other head
            continue
        pred = probs[head].argmax(axis=1)[known]
        for lang, rows in language_slices(langs[known]):
            prefix = f"{split}/{head}/" if lang is None else f"{split}/{head}/{lang}/"
            for key, value in summary(targets[head][known][rows], pred[rows], names).items():
                out[f"{prefix}{key}"] = value
    return out


# --- Calibration -------------------------------------------------------------------------------


def _top_label(probs: np.ndarray, y_true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence and whether the top label (first argmax) is the true one."""
    probs = np.asarray(probs, dtype=float)
    y_true = np.asarray(y_true, dtype=int)
    if probs.ndim != 2 or len(probs) != len(y_true):
        raise ValueError(f"probs must be (n, k) with n = len(y_true); got {probs.shape}")
    if probs.shape[1] == 0:
        return np.zeros(len(probs)), np.zeros(len(probs), dtype=bool)
    return probs.max(axis=1), probs.argmax(axis=1) == y_true


def reliability_bins(
    probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15, strategy: str = "width"
) -> dict[str, np.ndarray]:
    """Top-label confidence and accuracy per confidence bin (the reliability diagram).

    The confidence of a row is its largest probability; it is correct when the first argmax is
    the true label. Strategies:

    * ``"width"``: ``n_bins`` equal-width bins on [0, 1]; bin ``b`` is ``(lo, hi]``, except the
      first, which is ``[0, hi]``, so a confidence of exactly 1.0 lands in the last bin and 0.0
      in the first. ``lo``/``hi`` are the bin edges.
    * ``"mass"``: rows sorted by confidence (stable, so tied rows keep their row order) and cut
      into ``n_bins`` consecutive chunks whose sizes differ by at most one (the first chunks get
      the extra rows, as ``np.array_split``). Tied confidences may therefore be split across two
      neighbouring bins. ``lo``/``hi`` are the smallest and largest confidence in the bin; with
      fewer rows than bins the last bins are empty.

    Returns:
        Arrays of length ``n_bins``: ``lo``, ``hi``, ``count``, ``confidence`` (mean top-label
        confidence) and ``accuracy``; ``confidence`` and ``accuracy`` (and ``lo``/``hi`` for
        ``"mass"``) are NaN for empty bins.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    conf, correct = _top_label(probs, y_true)
    if strategy == "width":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        # searchsorted(side="left") - 1 puts c in the bin with lo < c <= hi; 0.0 gives -1 -> 0.
        index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
        lo, hi = edges[:-1], edges[1:]
    elif strategy == "mass":
        order = np.argsort(conf, kind="stable")
        index = np.empty(len(conf), dtype=int)
        for b, chunk in enumerate(np.array_split(order, n_bins)):
            index[chunk] = b
        lo, hi = np.full(n_bins, np.nan), np.full(n_bins, np.nan)
        for b, chunk in enumerate(np.array_split(conf[order], n_bins)):
            if len(chunk):
                lo[b], hi[b] = chunk[0], chunk[-1]
    else:
        raise ValueError(f"strategy must be 'width' or 'mass', got {strategy!r}")
    count = np.bincount(index, minlength=n_bins)
    nonempty = count > 0
    mean_conf = np.full(n_bins, np.nan)
    accuracy = np.full(n_bins, np.nan)
    mean_conf[nonempty] = np.bincount(index, weights=conf, minlength=n_bins)[nonempty]
    accuracy[nonempty] = np.bincount(index, weights=correct, minlength=n_bins)[nonempty]
    mean_conf[nonempty] /= count[nonempty]
    accuracy[nonempty] /= count[nonempty]
    return {"lo": lo, "hi": hi, "count": count, "confidence": mean_conf, "accuracy": accuracy}


def _bin_gaps(bins: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Counts and ``|accuracy - confidence|`` of the non-empty bins."""
    nonempty = bins["count"] > 0
    return bins["count"][nonempty], np.abs(bins["accuracy"] - bins["confidence"])[nonempty]


def ece(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15, strategy: str = "width") -> float:
    """Expected calibration error of the top-label confidence.

    ``sum_b (|b| / n) * |acc_b - conf_b|`` over the bins of :func:`reliability_bins` (see there
    for the binning); 0.0 for no rows.
    """
    count, gap = _bin_gaps(reliability_bins(probs, y_true, n_bins, strategy))
    return float((count * gap).sum() / count.sum()) if count.sum() else 0.0


def mce(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15, strategy: str = "width") -> float:
    """Maximum calibration error: the largest ``|acc_b - conf_b|`` over the non-empty bins of
    :func:`reliability_bins`; 0.0 for no rows."""
    _, gap = _bin_gaps(reliability_bins(probs, y_true, n_bins, strategy))
    return float(gap.max()) if len(gap) else 0.0


def ece_if_calibrated(
    probs: np.ndarray,
    n_bins: int = 15,
    strategy: str = "width",
    n_draws: int = 200,
    seed: int = 0,
) -> tuple[float, float]:
    """The ECE a perfectly calibrated model would show with these probabilities on this many rows.

    ECE is biased upwards on small samples: even when every probability is exactly right, the
    accuracy in a bin scatters around its confidence. Labels are drawn from the probabilities
    themselves (consistency resampling, Broecker & Smith 2007), ``n_draws`` times with
    ``np.random.default_rng(seed)``, and the ECE of each draw computed as :func:`ece` does. An
    observed ECE near this value cannot be told from perfect calibration on these rows; a target
    below it cannot be shown to hold.

    Returns:
        ``(mean, 95th percentile)`` of the ECE over the draws; ``(0.0, 0.0)`` for no rows.
    """
    probs = np.asarray(probs, dtype=float)
    if not len(probs):
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    cumulative = probs.cumsum(axis=1)
    values = np.empty(n_draws)
    for i in range(n_draws):
        u = rng.random((len(probs), 1)) * cumulative[:, -1:]
        labels = np.minimum((u > cumulative).sum(axis=1), probs.shape[1] - 1)
        values[i] = ece(probs, labels, n_bins, strategy)
    return float(values.mean()), float(np.quantile(values, 0.95))


def brier(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Multiclass Brier score: mean over rows of ``sum_k (p_k - onehot_k)^2`` (range 0..2).

    For two classes this is twice the binary ``mean((p_1 - y)^2)`` that
    ``sklearn.metrics.brier_score_loss`` reports by default. 0.0 for no rows.
    """
    probs = np.asarray(probs, dtype=float)
    y_true = np.asarray(y_true, dtype=int)
    if not len(y_true):
        return 0.0
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(y_true)), y_true] = 1.0
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def nll(probs: np.ndarray, y_true: np.ndarray, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood (natural log) of the true class, its probability clipped to
    ``[eps, 1]``; 0.0 for no rows."""
    probs = np.asarray(probs, dtype=float)
    y_true = np.asarray(y_true, dtype=int)
    if not len(y_true):
        return 0.0
    p_true = np.clip(probs[np.arange(len(y_true)), y_true], eps, 1.0)
    return float(-np.log(p_true).mean())


# --- Selective prediction ----------------------------------------------------------------------


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> dict[str, np.ndarray]:
    """Risk–coverage curve: error rate among the most confident rows, per coverage.

    Rows are sorted by confidence, highest first. Tied confidences form one step (a threshold
    takes all of them or none), so the curve has one point per distinct confidence value, from
    the highest down: point ``j`` keeps the ``m_j`` rows with ``confidence >= threshold[j]``.
    Without ties this is one point per ``m = 1..n``.

    Returns:
        ``coverage`` (``m_j / n``), ``risk`` (share of errors among those ``m_j`` rows) and
        ``threshold`` (the confidence value of the step); empty arrays for no rows.
    """
    confidence = np.asarray(confidence, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError("confidence and correct must be 1-d arrays of the same length")
    order = np.argsort(-confidence, kind="stable")
    conf, errors = confidence[order], np.cumsum(~correct[order])
    # The last row of each run of equal confidences closes a step.
    last = np.flatnonzero(np.append(conf[1:] != conf[:-1], True)) if len(conf) else np.arange(0)
    kept = last + 1
    return {
        "coverage": kept / len(conf) if len(conf) else np.zeros(0),
        "risk": errors[last] / kept,
        "threshold": conf[last],
    }


def aurc(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Area under the risk–coverage curve of :func:`risk_coverage` (lower is better).

    ``AURC = sum_j (coverage_j - coverage_{j-1}) * risk_j`` with ``coverage_0 = 0``: a step
    function integrated with each step's risk taken at its right end. Equivalently, the mean
    over all rows of the risk at the step that takes the row. Without ties every increment is
    ``1/n`` and this is ``mean_{m=1..n} risk_m``, the AURC of Geifman et al. (2019). 0.0 for no
    rows.
    """
    curve = risk_coverage(confidence, correct)
    if not len(curve["coverage"]):
        return 0.0
    return float((np.diff(curve["coverage"], prepend=0.0) * curve["risk"]).sum())


def coverage_at(probs: np.ndarray, thresholds: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Which rows are decided automatically under per-class thresholds.

    A row is decided when the probability of its top class (first argmax) is ``>=`` that class's
    threshold and, when ``margin > 0``, the gap between its two largest probabilities is
    ``>= margin`` (it abstains when ``top1 - top2 < margin``; the comparisons are exact, so
    mind float rounding at the boundary). A threshold of ``np.inf`` keeps a class manual.

    Args:
        probs: ``(n, k)`` probabilities.
        thresholds: ``(k,)`` threshold per class, or ``(n, k)``: one row of thresholds per
            message (per-language thresholds).
        margin: Smallest allowed gap between the top two probabilities.

    Returns:
        Boolean ``(n,)`` array, True where the row is decided automatically.
    """
    probs = np.asarray(probs, dtype=float)
    thresholds = np.asarray(thresholds, dtype=float)
    if probs.ndim != 2 or thresholds.shape not in ((probs.shape[1],), probs.shape):
        raise ValueError(
            f"thresholds must have shape ({probs.shape[-1]},) or {probs.shape}; "
            f"got {thresholds.shape}"
        )
    if not probs.size:
        return np.zeros(len(probs), dtype=bool)
    rows = np.arange(len(probs))
    top = probs.argmax(axis=1)
    top1 = probs[rows, top]
    decided = top1 >= (thresholds[top] if thresholds.ndim == 1 else thresholds[rows, top])
    if margin > 0 and probs.shape[1] > 1:
        top2 = np.partition(probs, -2, axis=1)[:, -2]
        decided &= top1 - top2 >= margin
    return decided


def automation_report(
    probs: np.ndarray,
    y_true: np.ndarray,
    thresholds: np.ndarray,
    labels: Sequence[str],
    margin: float = 0.0,
) -> dict[str, float]:
    """Coverage and errors of the automated decisions of :func:`coverage_at` (``thresholds``
    per class, or per row and class).

    Keys: ``n``; ``coverage`` (share of rows decided automatically) and ``n_auto``;
    ``auto_accuracy`` (share of automated rows whose top class is the true one; NaN when nothing
    is automated); and per class:

    * ``n_auto/<label>``: rows automated as ``<label>``;
    * ``auto_fpr/<label>``: the share of those whose true class is another: the false positives
      among automated decisions, which docs/taxonomy.md holds to the target (0.0 when none);
    * ``auto_fpr_upper/<label>``: its Wilson 95% (two-sided) upper bound (1.0 when none);

    and ``auto_fpr_max``, the largest ``auto_fpr`` over the classes.
    """
    probs = np.asarray(probs, dtype=float)
    y_true = np.asarray(y_true, dtype=int)
    n_classes = len(labels)
    if probs.ndim != 2 or probs.shape != (len(y_true), n_classes):
        raise ValueError(f"probs must have shape ({len(y_true)}, {n_classes}); got {probs.shape}")
    auto = coverage_at(probs, thresholds, margin)
    pred = probs.argmax(axis=1) if n_classes else np.zeros(len(y_true), dtype=int)
    matrix = confusion_matrix(y_true[auto], pred[auto], n_classes)
    right = np.diag(matrix)
    n_auto = matrix.sum(axis=0)
    wrong = n_auto - right
    rate = _ratio(wrong.astype(float), n_auto.astype(float))
    decided = int(auto.sum())
    out = {
        "n": float(len(y_true)),
        "coverage": decided / len(y_true) if len(y_true) else 0.0,
        "n_auto": float(decided),
        "auto_accuracy": float(right.sum() / decided) if decided else math.nan,
        "auto_fpr_max": float(rate.max()) if n_classes else 0.0,
    }
    for i, label in enumerate(labels):
        out[f"n_auto/{label}"] = float(n_auto[i])
        out[f"auto_fpr/{label}"] = float(rate[i])
        out[f"auto_fpr_upper/{label}"] = wilson_interval(int(wrong[i]), int(n_auto[i]))[1]
    return out


# --- Uncertainty of the estimates --------------------------------------------------------------


def bootstrap_ci(
    metric_fn: Callable[..., float],
    *arrays: np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Point estimate and percentile bootstrap interval of a metric over rows.

    Each resample draws ``n`` row indices with replacement (``np.random.default_rng(seed)``)
    and applies the same indices to every array; the interval is the ``alpha/2`` and
    ``1 - alpha/2`` quantiles (linear interpolation) of the ``n_boot`` resampled values.

    Args:
        metric_fn: Called as ``metric_fn(*arrays)`` and returns a float, e.g. ``ece``.
        *arrays: Arrays with the same number of rows (first axis).
        n_boot: Number of resamples.
        alpha: 1 - confidence level of the interval.
        seed: Seed; the result is deterministic for a given seed.

    Returns:
        ``(estimate on all rows, lower, upper)``.
    """
    arrays_ = [np.asarray(a) for a in arrays]
    if not arrays_ or len({len(a) for a in arrays_}) != 1 or not len(arrays_[0]):
        raise ValueError("bootstrap_ci needs one or more non-empty arrays of the same length")
    n = len(arrays_[0])
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for i in range(n_boot):
        index = rng.integers(0, n, size=n)
        values[i] = metric_fn(*(a[index] for a in arrays_))
    lower, upper = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(metric_fn(*arrays_)), float(lower), float(upper)


def wilson_interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``k / n`` (two-sided, level ``1 - alpha``).

    With ``z`` the ``1 - alpha/2`` normal quantile and ``p = k / n``: centre
    ``(p + z^2 / 2n) / (1 + z^2 / n)``, half-width ``z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)``.
    The upper end is a one-sided ``1 - alpha/2`` upper bound (e.g. for an FPR: pass
    ``alpha=0.10`` for a one-sided 95% bound). ``n == 0`` gives ``(0.0, 1.0)``.
    """
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(1 - alpha / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lower = 0.0 if k == 0 else max(0.0, centre - half)
    upper = 1.0 if k == n else min(1.0, centre + half)
    return lower, upper


def paired_accuracy(
    correct_a: np.ndarray, correct_b: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> dict[str, float]:
    """Accuracy of ``a`` minus that of ``b`` on the same messages (row ``i`` of both is one
    message, e.g. in two languages).

    Returns ``n``, ``acc_a``, ``acc_b``, ``diff`` (``acc_a - acc_b``), ``diff_lo`` / ``diff_hi``
    (a paired percentile bootstrap: messages are resampled, each with both of its answers),
    ``only_a`` / ``only_b`` (messages only ``a`` / only ``b`` got right) and ``mcnemar_p``
    (McNemar's exact test: two-sided binomial test of ``only_a`` among the discordant
    messages at 1/2; 1.0 when there are none).
    """
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two 1-d arrays of one length, got {a.shape} and {b.shape}")
    diff, lo, hi = bootstrap_ci(
        lambda x, y: float(x.mean() - y.mean()), a, b, n_boot=n_boot, seed=seed
    )
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    p = binomtest(only_a, discordant, 0.5).pvalue if discordant else 1.0
    return {
        "n": float(len(a)),
        "acc_a": float(a.mean()),
        "acc_b": float(b.mean()),
        "diff": diff,
        "diff_lo": lo,
        "diff_hi": hi,
        "only_a": float(only_a),
        "only_b": float(only_b),
        "mcnemar_p": float(p),
    }
