"""Calibration, selective-prediction and interval metrics on literal arrays worked out by hand.

The existing classification metrics (confusion_matrix, per_class, summary, score) are covered
elsewhere; here they appear only as references for the new functions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from triage.modeling.metrics import (
    aurc,
    automation_report,
    bootstrap_ci,
    brier,
    coverage_at,
    ece,
    ece_if_calibrated,
    mce,
    nll,
    per_class,
    reliability_bins,
    risk_coverage,
    summary,
    wilson_interval,
)

# Five rows, three classes. Top-label confidence / prediction / correct:
#   r0 [1.0, 0.0, 0.0] y=0 -> conf 1.0, pred 0, correct
#   r1 [0.8, 0.1, 0.1] y=1 -> conf 0.8, pred 0, wrong
#   r2 [0.2, 0.5, 0.3] y=1 -> conf 0.5, pred 1, correct
#   r3 [0.3, 0.3, 0.4] y=0 -> conf 0.4, pred 2, wrong
#   r4 [0.6, 0.2, 0.2] y=0 -> conf 0.6, pred 0, correct
PROBS = np.array(
    [
        [1.0, 0.0, 0.0],
        [0.8, 0.1, 0.1],
        [0.2, 0.5, 0.3],
        [0.3, 0.3, 0.4],
        [0.6, 0.2, 0.2],
    ]
)
Y = np.array([0, 1, 1, 0, 0])


# --- reliability_bins / ece / mce ---------------------------------------------------------------


def test_reliability_bins_width_by_hand():
    # 4 equal-width bins (edges exact in binary): [0, .25], (.25, .5], (.5, .75], (.75, 1].
    #   bin 0: empty
    #   bin 1: r2 (0.5, on the upper edge -> (.25, .5]), r3 (0.4) -> conf .45, acc 1/2
    #   bin 2: r4 (0.6)                                            -> conf .6,  acc 1
    #   bin 3: r0 (1.0, exactly 1 -> last bin), r1 (0.8)           -> conf .9,  acc 1/2
    bins = reliability_bins(PROBS, Y, n_bins=4)
    np.testing.assert_allclose(bins["lo"], [0.0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(bins["hi"], [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(bins["count"], [0, 2, 1, 2])
    np.testing.assert_allclose(bins["confidence"], [np.nan, 0.45, 0.6, 0.9])
    np.testing.assert_allclose(bins["accuracy"], [np.nan, 0.5, 1.0, 0.5])


def test_ece_and_mce_width_by_hand():
    # gaps |acc - conf|: bin 1 .05, bin 2 .4, bin 3 .4 (bin 0 empty: no weight, not in the max)
    # ECE = 2/5 * .05 + 1/5 * .4 + 2/5 * .4 = .02 + .08 + .16 = .26; MCE = .4
    assert ece(PROBS, Y, n_bins=4) == pytest.approx(0.26)
    assert mce(PROBS, Y, n_bins=4) == pytest.approx(0.4)


def test_confidence_exactly_zero_goes_to_the_closed_first_bin():
    # A degenerate all-zero row (confidence 0.0) must land in [0, .5], not fall off the left;
    # a confidence of exactly 1.0 lands in (.5, 1].
    probs = np.array([[0.0, 0.0], [1.0, 0.0]])
    bins = reliability_bins(probs, np.array([1, 0]), n_bins=2)
    np.testing.assert_array_equal(bins["count"], [1, 1])
    # row 0: argmax 0 != y 1 -> wrong, conf 0 -> gap 0; row 1: right, conf 1 -> gap 0
    np.testing.assert_allclose(bins["accuracy"], [0.0, 1.0])
    assert ece(probs, np.array([1, 0]), n_bins=2) == 0.0


def test_reliability_bins_mass_by_hand():
    # Sorted confidences: .4 (r3 wrong), .5 (r2 ok), .6 (r4 ok) | .8 (r1 wrong), 1.0 (r0 ok)
    # 5 rows in 2 bins -> sizes 3, 2 (the first bin takes the extra row).
    #   bin 0: conf (.4+.5+.6)/3 = .5, acc 2/3 -> gap 1/6
    #   bin 1: conf (.8+1)/2 = .9,     acc 1/2 -> gap .4
    # ECE = 3/5 * 1/6 + 2/5 * .4 = .1 + .16 = .26; MCE = .4
    bins = reliability_bins(PROBS, Y, n_bins=2, strategy="mass")
    np.testing.assert_array_equal(bins["count"], [3, 2])
    np.testing.assert_allclose(bins["lo"], [0.4, 0.8])
    np.testing.assert_allclose(bins["hi"], [0.6, 1.0])
    np.testing.assert_allclose(bins["confidence"], [0.5, 0.9])
    np.testing.assert_allclose(bins["accuracy"], [2 / 3, 0.5])
    assert ece(PROBS, Y, n_bins=2, strategy="mass") == pytest.approx(0.26)
    assert mce(PROBS, Y, n_bins=2, strategy="mass") == pytest.approx(0.4)


def test_mass_bins_split_ties_in_row_order():
    # confidences .7 (ok), .7 (ok), .7 (wrong), .9 (ok); 2 bins of 2 rows.
    # Stable sort keeps the tied rows in row order: bin 0 = rows 0, 1; bin 1 = rows 2, 3.
    #   bin 0: conf .7, acc 1 -> gap .3;  bin 1: conf .8, acc 1/2 -> gap .3
    probs = np.array([[0.7, 0.3], [0.7, 0.3], [0.7, 0.3], [0.9, 0.1]])
    y = np.array([0, 0, 1, 0])
    bins = reliability_bins(probs, y, n_bins=2, strategy="mass")
    np.testing.assert_array_equal(bins["count"], [2, 2])
    np.testing.assert_allclose(bins["confidence"], [0.7, 0.8])
    np.testing.assert_allclose(bins["accuracy"], [1.0, 0.5])
    np.testing.assert_allclose(bins["lo"], [0.7, 0.7])  # the tie straddles the boundary
    assert ece(probs, y, n_bins=2, strategy="mass") == pytest.approx(0.3)


def test_mass_bins_with_fewer_rows_than_bins_leave_the_last_bins_empty():
    probs = np.array([[0.9, 0.1], [0.6, 0.4]])
    bins = reliability_bins(probs, np.array([0, 1]), n_bins=3, strategy="mass")
    np.testing.assert_array_equal(bins["count"], [1, 1, 0])
    assert np.isnan(bins["confidence"][2]) and np.isnan(bins["accuracy"][2])
    assert np.isnan(bins["lo"][2]) and np.isnan(bins["hi"][2])
    # bin 0: .6 wrong -> gap .6; bin 1: .9 right -> gap .1; ECE = (.6 + .1) / 2, MCE = .6
    assert ece(probs, np.array([0, 1]), n_bins=3, strategy="mass") == pytest.approx(0.35)
    assert mce(probs, np.array([0, 1]), n_bins=3, strategy="mass") == pytest.approx(0.6)


def test_calibration_of_no_rows_is_zero_and_bad_arguments_raise():
    empty = np.zeros((0, 3))
    no_labels = np.zeros(0, dtype=int)
    assert ece(empty, no_labels) == 0.0 and mce(empty, no_labels) == 0.0
    assert reliability_bins(empty, no_labels)["count"].sum() == 0
    with pytest.raises(ValueError, match="strategy"):
        ece(PROBS, Y, strategy="quantile")
    with pytest.raises(ValueError, match="n_bins"):
        ece(PROBS, Y, n_bins=0)


def _synthetic(n: int, gap: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """3-class rows with top-label confidence ``c ~ U(0.4, 1)``, right with probability
    ``c - gap``; the top class sits at a random position, the rest split ``1 - c`` evenly."""
    rng = np.random.default_rng(seed)
    conf = rng.uniform(0.4, 1.0, n)
    top = rng.integers(0, 3, n)
    probs = np.repeat(((1 - conf) / 2)[:, None], 3, axis=1)
    probs[np.arange(n), top] = conf
    right = rng.random(n) < conf - gap
    y = np.where(right, top, (top + rng.integers(1, 3, n)) % 3)
    return probs, y


@pytest.mark.parametrize("strategy", ["width", "mass"])
def test_ece_is_small_when_calibrated_and_large_when_overconfident(strategy):
    probs, y = _synthetic(200_000, gap=0.0)
    assert ece(probs, y, strategy=strategy) < 0.01
    probs, y = _synthetic(200_000, gap=0.2)
    assert ece(probs, y, strategy=strategy) == pytest.approx(0.2, abs=0.01)
    assert mce(probs, y, strategy=strategy) > 0.15


def test_ece_if_calibrated_is_the_sampling_noise_of_ece():
    """Ten rows all at confidence 0.9 fall in one bin, so ECE = |k/10 - 0.9| with k ~ Bin(10, 0.9):
    its mean and 95th percentile are worked out exactly from the binomial."""
    probs = np.tile([0.9, 0.1], (10, 1))
    pmf = {k: math.comb(10, k) * 0.9**k * 0.1 ** (10 - k) for k in range(11)}
    exact_mean = sum(p * abs(k / 10 - 0.9) for k, p in pmf.items())  # 0.0775
    mean, q95 = ece_if_calibrated(probs, n_bins=15, n_draws=4000)
    assert mean == pytest.approx(exact_mean, abs=0.005)
    # P(ECE <= 0.1) = P(k >= 8) = 0.930 < 0.95 <= P(ECE <= 0.2) = P(k >= 7) = 0.987
    assert q95 == pytest.approx(0.2)
    # it shrinks with the number of rows, and an overconfident model lies far above it
    big, _ = _synthetic(5_000, gap=0.0)
    assert ece_if_calibrated(big)[0] < ece_if_calibrated(big[:100])[0] / 3
    probs, y = _synthetic(5_000, gap=0.2)
    assert ece(probs, y) > 10 * ece_if_calibrated(probs)[1]
    assert ece_if_calibrated(np.empty((0, 3))) == (0.0, 0.0)


# --- brier / nll -------------------------------------------------------------------------------


def test_brier_multiclass_by_hand_and_against_sklearn():
    from sklearn.metrics import brier_score_loss

    # [.7,.2,.1] y=0: .3^2 + .2^2 + .1^2 = .09 + .04 + .01 = .14
    # [.2,.5,.3] y=2: .2^2 + .5^2 + .7^2 = .04 + .25 + .49 = .78
    # [1, 0, 0]  y=0: 0
    # mean = .92 / 3
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [1.0, 0.0, 0.0]])
    y = np.array([0, 2, 0])
    assert brier(probs, y) == pytest.approx(0.92 / 3)
    assert brier(probs, y) == pytest.approx(brier_score_loss(y, probs, labels=[0, 1, 2]))


def test_brier_binary_is_twice_sklearns_binary_definition():
    from sklearn.metrics import brier_score_loss

    # multiclass sum: [.8,.2] y=0: .04+.04; [.4,.6] y=0: .36+.36; [.1,.9] y=1: .01+.01
    #   -> (.08 + .72 + .02) / 3 = .82 / 3
    # sklearn binary mean((p1 - y)^2) = (.04 + .36 + .01) / 3 = .41 / 3: exactly half.
    probs = np.array([[0.8, 0.2], [0.4, 0.6], [0.1, 0.9]])
    y = np.array([0, 0, 1])
    assert brier(probs, y) == pytest.approx(0.82 / 3)
    assert brier(probs, y) == pytest.approx(2 * brier_score_loss(y, probs[:, 1]))


def test_nll_by_hand_and_against_sklearn():
    from sklearn.metrics import log_loss

    # -log .7 = .356675, -log .3 = 1.203973, -log 1 = 0 -> mean .520216
    probs = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [1.0, 0.0, 0.0]])
    y = np.array([0, 2, 0])
    expected = (-math.log(0.7) - math.log(0.3)) / 3
    assert nll(probs, y) == pytest.approx(expected)
    assert expected == pytest.approx(0.520216, abs=1e-6)
    assert nll(probs, y) == pytest.approx(log_loss(y, probs, labels=[0, 1, 2]))


def test_nll_clips_a_zero_probability_at_eps():
    # true-class probability 0 -> -log(1e-12) = 27.631021...; with eps=1e-3: 6.907755...
    probs = np.array([[1.0, 0.0]])
    assert nll(probs, np.array([1])) == pytest.approx(12 * math.log(10))
    assert nll(probs, np.array([1]), eps=1e-3) == pytest.approx(3 * math.log(10))
    assert brier(np.zeros((0, 2)), np.zeros(0, dtype=int)) == 0.0
    assert nll(np.zeros((0, 2)), np.zeros(0, dtype=int)) == 0.0


# --- risk_coverage / aurc ----------------------------------------------------------------------


def test_risk_coverage_groups_ties_by_hand():
    # Sorted by confidence: .9 ok | .8 wrong, .8 ok | .6 ok | .3 wrong | 0.0 ok
    #   step .9: m=1, errors 0 -> coverage 1/6, risk 0
    #   step .8: m=3, errors 1 -> coverage 3/6, risk 1/3   (the tied pair is one step)
    #   step .6: m=4, errors 1 -> coverage 4/6, risk 1/4
    #   step .3: m=5, errors 2 -> coverage 5/6, risk 2/5
    #   step 0 : m=6, errors 2 -> coverage 1,   risk 1/3
    conf = np.array([0.8, 0.9, 0.3, 0.8, 0.0, 0.6])
    correct = np.array([False, True, False, True, True, True])
    curve = risk_coverage(conf, correct)
    np.testing.assert_allclose(curve["coverage"], [1 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0])
    np.testing.assert_allclose(curve["risk"], [0.0, 1 / 3, 1 / 4, 2 / 5, 1 / 3])
    np.testing.assert_allclose(curve["threshold"], [0.9, 0.8, 0.6, 0.3, 0.0])
    # AURC = 1/6*0 + 2/6*1/3 + 1/6*1/4 + 1/6*2/5 + 1/6*1/3 = (2/3 + 1/4 + 2/5 + 1/3) / 6 = .275
    assert aurc(conf, correct) == pytest.approx(0.275)
    # The order of tied rows does not matter (per-row steps would give risk 0 or 1/2 at m=2).
    swapped = risk_coverage(conf[[3, 1, 2, 0, 4, 5]], correct[[3, 1, 2, 0, 4, 5]])
    for key in curve:
        np.testing.assert_allclose(swapped[key], curve[key])


def test_aurc_without_ties_is_the_mean_risk_over_prefixes():
    # conf .9 ok, .7 wrong, .5 ok, .2 wrong -> risks 0, 1/2, 1/3, 1/2 -> mean 1/3
    conf = np.array([0.5, 0.9, 0.2, 0.7])
    correct = np.array([True, True, False, False])
    np.testing.assert_allclose(risk_coverage(conf, correct)["coverage"], [0.25, 0.5, 0.75, 1.0])
    assert aurc(conf, correct) == pytest.approx(1 / 3)
    # Geifman et al.: mean over m = 1..n of the error rate of the m most confident rows.
    rng = np.random.default_rng(1)
    conf, correct = rng.random(500), rng.random(500) < 0.8
    errors = np.cumsum(~correct[np.argsort(-conf)])
    assert aurc(conf, correct) == pytest.approx(np.mean(errors / np.arange(1, 501)))


def test_risk_coverage_edge_cases():
    # all tied -> one point; all right -> AURC 0; no rows -> empty curve, AURC 0
    curve = risk_coverage(np.array([0.5, 0.5, 0.5]), np.array([True, False, True]))
    np.testing.assert_allclose(curve["coverage"], [1.0])
    np.testing.assert_allclose(curve["risk"], [1 / 3])
    assert aurc(np.array([0.5, 0.5, 0.5]), np.array([True, False, True])) == pytest.approx(1 / 3)
    assert aurc(np.array([0.9, 0.1]), np.array([True, True])) == 0.0
    assert len(risk_coverage(np.zeros(0), np.zeros(0, dtype=bool))["risk"]) == 0
    assert aurc(np.zeros(0), np.zeros(0, dtype=bool)) == 0.0
    with pytest.raises(ValueError):
        risk_coverage(np.zeros(2), np.zeros(3, dtype=bool))


# --- coverage_at / automation_report ------------------------------------------------------------

# thresholds per class: a .6, b never (inf), c .5
#   s0 [.70, .20, .10] top a .70 >= .6 -> decided; top1 - top2 = .50
#   s1 [.10, .90, .00] top b, threshold inf -> never
#   s2 [.30, .20, .50] top c .50 >= .5 (equal counts) -> decided; top1 - top2 = .20
#   s3 [.55, .40, .05] top a .55 < .6 -> manual
#   s4 [.05, .15, .80] top c .80 >= .5 -> decided; top1 - top2 = .65
SEL_PROBS = np.array(
    [
        [0.70, 0.20, 0.10],
        [0.10, 0.90, 0.00],
        [0.30, 0.20, 0.50],
        [0.55, 0.40, 0.05],
        [0.05, 0.15, 0.80],
    ]
)
SEL_THRESHOLDS = np.array([0.6, np.inf, 0.5])
SEL_Y = np.array([0, 1, 0, 0, 2])
SEL_LABELS = ["a", "b", "c"]


def test_coverage_at_thresholds_inf_and_margin_by_hand():
    np.testing.assert_array_equal(
        coverage_at(SEL_PROBS, SEL_THRESHOLDS), [True, False, True, False, True]
    )
    # margin .3: s2's gap .20 < .3 -> abstains; s0 (.50) and s4 (.65) stay decided
    np.testing.assert_array_equal(
        coverage_at(SEL_PROBS, SEL_THRESHOLDS, margin=0.3), [True, False, False, False, True]
    )
    assert not coverage_at(SEL_PROBS, np.full(3, np.inf)).any()
    assert coverage_at(SEL_PROBS, np.zeros(3)).all()
    with pytest.raises(ValueError, match="thresholds"):
        coverage_at(SEL_PROBS, np.zeros(2))


def test_coverage_at_per_row_thresholds_by_hand():
    # rows 0-2 use SEL_THRESHOLDS; rows 3-4 a stricter table (a .5, b .9, c .9):
    #   s3 top a .55 >= .5 -> decided now; s4 top c .80 < .9 -> manual now
    strict = np.array([0.5, 0.9, 0.9])
    per_row = np.vstack([SEL_THRESHOLDS] * 3 + [strict] * 2)
    np.testing.assert_array_equal(coverage_at(SEL_PROBS, per_row), [True, False, True, True, False])
    report = automation_report(SEL_PROBS, SEL_Y, per_row, SEL_LABELS)
    assert report["n_auto"] == 3 and report["n_auto/a"] == 2  # s0 right, s3 right
    with pytest.raises(ValueError, match="thresholds"):
        coverage_at(SEL_PROBS, per_row[:4])


def test_automation_report_by_hand():
    # automated: s0 (pred a, true a: right), s2 (pred c, true a: wrong), s4 (pred c, true c: right)
    # coverage 3/5; accuracy among automated 2/3
    # a: automated as a: s0 (right)            -> n 1, auto_fpr 0/1
    # b: never automated                       -> n 0, auto_fpr 0, upper bound 1
    # c: automated as c: s2 (wrong), s4 (right) -> n 2, auto_fpr 1/2
    report = automation_report(SEL_PROBS, SEL_Y, SEL_THRESHOLDS, SEL_LABELS)
    expected = {
        "n": 5.0,
        "coverage": 0.6,
        "n_auto": 3.0,
        "auto_accuracy": 2 / 3,
        "auto_fpr_max": 0.5,
        "n_auto/a": 1.0,
        "auto_fpr/a": 0.0,
        "auto_fpr_upper/a": wilson_interval(0, 1)[1],
        "n_auto/b": 0.0,
        "auto_fpr/b": 0.0,
        "auto_fpr_upper/b": 1.0,
        "n_auto/c": 2.0,
        "auto_fpr/c": 0.5,
        "auto_fpr_upper/c": wilson_interval(1, 2)[1],
    }
    assert report.keys() == expected.keys()
    assert report == pytest.approx(expected)


def test_automation_report_with_margin_and_with_nothing_automated():
    # margin .3 leaves s0 (right) and s4 (right): coverage 2/5, no automatic errors
    report = automation_report(SEL_PROBS, SEL_Y, SEL_THRESHOLDS, SEL_LABELS, margin=0.3)
    assert report["coverage"] == pytest.approx(0.4)
    assert report["auto_accuracy"] == 1.0 and report["auto_fpr_max"] == 0.0
    assert report["n_auto/c"] == 1.0
    none = automation_report(SEL_PROBS, SEL_Y, np.full(3, np.inf), SEL_LABELS)
    assert none["coverage"] == 0.0 and none["n_auto"] == 0.0
    assert np.isnan(none["auto_accuracy"]) and none["auto_fpr_max"] == 0.0


def test_automating_everything_gives_one_minus_precision():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(4), 300)
    y = rng.integers(0, 4, 300)
    labels = ["w", "x", "y", "z"]
    report = automation_report(probs, y, np.zeros(4), labels)
    stats = per_class(y, probs.argmax(axis=1), 4)
    assert report["coverage"] == 1.0
    assert report["auto_accuracy"] == pytest.approx(summary(y, probs.argmax(1), labels)["accuracy"])
    for i, label in enumerate(labels):
        assert report[f"auto_fpr/{label}"] == pytest.approx(1 - stats["precision"][i])


# --- bootstrap_ci / wilson_interval ------------------------------------------------------------


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y))


def test_bootstrap_ci_is_deterministic_contains_the_estimate_and_narrows():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 5000)
    pred = np.where(rng.random(5000) < 0.8, y, 1 - y)
    small = bootstrap_ci(_accuracy, pred[:100], y[:100], n_boot=300)
    large = bootstrap_ci(_accuracy, pred, y, n_boot=300)
    assert small == bootstrap_ci(_accuracy, pred[:100], y[:100], n_boot=300)
    # (at n=100 the accuracies lie on a .01 grid, so compare seeds on the large sample)
    assert large != bootstrap_ci(_accuracy, pred, y, n_boot=300, seed=1)
    for estimate, lower, upper in (small, large):
        assert lower <= estimate <= upper
    assert large[0] == pytest.approx(_accuracy(pred, y))
    # width ~ 2 * 1.96 * sqrt(.8 * .2 / n): ~.157 at n=100, ~.022 at n=5000
    assert (large[2] - large[1]) < 0.5 * (small[2] - small[1])
    assert large[2] - large[1] == pytest.approx(2 * 1.96 * math.sqrt(0.16 / 5000), rel=0.25)


def test_bootstrap_ci_resamples_rows_jointly_and_works_with_ece():
    # Identical arrays resampled with the same rows stay identical: accuracy is 1 every time.
    y = np.arange(50) % 3
    assert bootstrap_ci(_accuracy, y, y, n_boot=50) == (1.0, 1.0, 1.0)
    # The metric can be any function of the rows, e.g. ECE on (probs, y_true).
    estimate, lower, upper = bootstrap_ci(ece, PROBS, Y, n_boot=200, alpha=0.1)
    assert estimate == pytest.approx(ece(PROBS, Y))
    assert 0.0 <= lower <= upper <= 1.0
    with pytest.raises(ValueError):
        bootstrap_ci(_accuracy, y, y[:10])
    with pytest.raises(ValueError):
        bootstrap_ci(_accuracy, y[:0], y[:0])


def test_wilson_interval_against_a_high_precision_reference():
    # Reference: the same formula in mpmath at 30 digits, z = sqrt(2) erfinv(.95) =
    # 1.959963984540054235524594430520 -> (0.021543679154367970739, 0.111750469231919145463)
    lower, upper = wilson_interval(5, 100)
    assert lower == pytest.approx(0.021543679154367970739, abs=1e-12)
    assert upper == pytest.approx(0.111750469231919145463, abs=1e-12)
    assert (round(lower, 4), round(upper, 4)) == (0.0215, 0.1118)


def test_wilson_interval_edge_cases():
    z2 = 1.959963984540054**2
    # k = 0: lower 0, upper z^2 / (n + z^2) = 3.841459 / 13.841459 = 0.277533
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))
    assert wilson_interval(0, 10)[0] == 0.0
    # k = n mirrors it; n = 0 says nothing
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + z2), 1.0))
    assert wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # a wider level gives a wider interval around the same centre
    lo90, hi90 = wilson_interval(5, 100, alpha=0.10)
    lo95, hi95 = wilson_interval(5, 100)
    assert lo95 < lo90 < 0.05 < hi90 < hi95
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    with pytest.raises(ValueError):
        wilson_interval(-1, 2)


def test_paired_accuracy_literal_with_mcnemar_by_hand():
    from scipy.stats import binomtest

    from triage.modeling.metrics import paired_accuracy

    # 10 messages: both right on 5, only a on 1, only b on 3, both wrong on 1
    a = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    b = np.array([1, 1, 1, 1, 1, 0, 1, 1, 1, 0], dtype=bool)
    out = paired_accuracy(a, b, n_boot=2000, seed=3)
    assert out["n"] == 10 and out["acc_a"] == 0.6 and out["acc_b"] == 0.8
    assert out["diff"] == pytest.approx(-0.2)
    assert (out["only_a"], out["only_b"]) == (1, 3)
    # exact McNemar: two-sided binomial P(X <= 1 or X >= 3 | 4, 1/2) = (1 + 4 + 4 + 1) / 16
    assert out["mcnemar_p"] == pytest.approx(10 / 16)
    assert out["mcnemar_p"] == pytest.approx(binomtest(1, 4, 0.5).pvalue)
    assert out["diff_lo"] < -0.2 < out["diff_hi"] <= 0.2 + 1e-9
    # the answers of one message are resampled together: identical answers never differ
    same = paired_accuracy(a, a, n_boot=200)
    assert same["diff"] == same["diff_lo"] == same["diff_hi"] == 0.0
    assert same["mcnemar_p"] == 1.0
    with pytest.raises(ValueError, match="1-d arrays of one length"):
        paired_accuracy(a, b[:5])
