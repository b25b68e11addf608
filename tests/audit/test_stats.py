"""Audit estimators on literal arrays: rates, weighted rates, kappa, PSI and the verdict rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from triage.audit import stats as st
from triage.modeling.metrics import wilson_interval


def test_rate_is_the_share_with_wilson_bounds():
    out = st.rate(np.array([True, False, True, True]))
    assert out["estimate"] == 0.75 and out["n"] == 4
    assert (out["lower"], out["upper"]) == wilson_interval(3, 4)
    assert math.isnan(st.rate(np.array([], dtype=bool))["estimate"])


def test_weighted_rate_literal():
    out = st.weighted_rate(np.array([1, 0, 1, 1]), np.array([1.0, 1.0, 2.0, 4.0]))
    assert out["estimate"] == pytest.approx(7 / 8)
    assert out["n_eff"] == pytest.approx(64 / 22)
    assert out["lower"] < 7 / 8 < out["upper"]
    # equal weights: exactly the unweighted rate and interval
    hits = np.array([True, False, True, True, False])
    same = st.weighted_rate(hits, np.full(5, 3.0))
    plain = st.rate(hits)
    for key in ("estimate", "lower", "upper", "n_eff"):
        assert same[key] == pytest.approx(plain[key])
    # all hits: the upper bound is 1, as Wilson's
    assert st.weighted_rate(np.ones(3, bool), np.array([1.0, 2.0, 3.0]))["upper"] == 1.0
    with pytest.raises(ValueError, match="positive"):
        st.weighted_rate(np.array([True]), np.array([0.0]))
    assert math.isnan(st.weighted_rate(np.array([], bool), np.array([]))["estimate"])


def test_kappa_literal_and_against_sklearn():
    a = ["y", "y", "n", "n", "y"]
    b = ["y", "n", "n", "n", "y"]
    # p_o = 0.8, p_e = 0.6 * 0.4 + 0.4 * 0.6 = 0.48
    assert st.kappa(a, b) == pytest.approx((0.8 - 0.48) / (1 - 0.48))
    rng = np.random.default_rng(0)
    x = rng.choice(["a", "b", "c"], size=200).tolist()
    y = [v if rng.random() < 0.7 else "a" for v in x]
    assert st.kappa(x, y) == pytest.approx(cohen_kappa_score(x, y))
    assert st.kappa(["a", "a"], ["a", "a"]) == 1.0  # one label, full agreement
    assert math.isnan(st.kappa([], []))
    with pytest.raises(ValueError):
        st.kappa(["a"], ["a", "b"])


def test_shares_psi_and_histograms():
    assert st.shares(["a", "b", "b", "c"], ["a", "b", "c", "d"]).tolist() == [0.25, 0.5, 0.25, 0]
    weighted = st.shares(["a", "b"], ["a", "b"], np.array([3.0, 1.0]))
    assert weighted.tolist() == [0.75, 0.25]
    assert st.psi(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(
        0.25 * math.log(2) + 0.25 * math.log(1.5)
    )
    assert st.psi(np.array([0.2, 0.8]), np.array([0.2, 0.8])) == 0.0
    assert np.isfinite(st.psi(np.array([1.0, 0.0]), np.array([0.5, 0.5])))
    edges = np.linspace(0, 1, 5)
    assert st.histogram_shares(np.array([0.1, 0.3, 0.3, 1.0]), edges).tolist() == [
        0.25,
        0.5,
        0.0,
        0.25,
    ]


@pytest.mark.parametrize(
    ("estimate", "direction", "status"),
    [
        ({"estimate": 0.02, "lower": 0.01, "upper": 0.04}, "max", "met"),
        ({"estimate": 0.03, "lower": 0.01, "upper": 0.09}, "max", "uncertain"),
        ({"estimate": 0.08, "lower": 0.04, "upper": 0.12}, "max", "not met"),
        ({"estimate": 0.90, "lower": 0.86, "upper": 0.93}, "min", "met"),
        ({"estimate": 0.88, "lower": 0.80, "upper": 0.93}, "min", "uncertain"),
        ({"estimate": 0.80, "lower": 0.75, "upper": 0.86}, "min", "not met"),
        ({"estimate": math.nan, "lower": 0.0, "upper": 1.0}, "min", "no data"),
    ],
)
def test_verdict(estimate, direction, status):
    target = 0.05 if direction == "max" else 0.85
    got, sentence = st.verdict(estimate, target, direction)
    assert got == status and sentence
