"""Audit estimators on literal arrays: rates, weighted rates, kappa, PSI and the verdict rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

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


def test_kappa_literal_values_of_the_hand_written_formula():
    """scikit-learn's kappa gives the values of the formula the audit used before it,
    ``(p_o - p_e) / (1 - p_e)``, worked out by hand here."""
    a = ["y", "y", "n", "n", "y"]
    b = ["y", "n", "n", "n", "y"]
    # p_o = 0.8, p_e = 0.6 * 0.4 + 0.4 * 0.6 = 0.48: 0.32 / 0.52 = 8 / 13
    assert st.kappa(a, b) == pytest.approx(0.6153846153846154, abs=1e-15)
    first = ["x", "x", "x", "y", "y", "z", "z", "z", "x", "y"]
    second = ["x", "x", "y", "y", "z", "z", "z", "x", "x", "y"]
    # p_o = 0.7, p_e = 0.4 * 0.4 + 0.3 * 0.3 + 0.3 * 0.3 = 0.34: 0.36 / 0.66 = 6 / 11
    assert st.kappa(first, second) == pytest.approx(0.5454545454545454, abs=1e-15)
    # the report passes integer codes: the same value
    codes = {"x": 0, "y": 1, "z": 2}
    as_codes = np.array([codes[v] for v in first]), np.array([codes[v] for v in second])
    assert st.kappa(*as_codes) == pytest.approx(0.5454545454545454, abs=1e-15)
    # never agreeing, each reviewer with one label: p_o = p_e = 0
    assert st.kappa(["a", "a"], ["b", "b"]) == 0.0
    assert st.kappa(["a", "a"], ["a", "a"]) == 1.0  # one label, full agreement (0/0)
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
