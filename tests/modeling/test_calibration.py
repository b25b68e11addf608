"""Temperature scaling and thresholds on synthetic and literal data."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from triage.config import CalibrateConfig
from triage.modeling.calibration import (
    calibrated_probs,
    choose_thresholds,
    fit_language_temperatures,
    fit_temperature,
    least_passing_decisions,
    load_calibration,
    lowest_safe_threshold,
    row_thresholds,
    save_calibration,
    softmax,
)
from triage.pipeline.calibrate import calibrate_head


def overconfident(n: int, k: int = 4, scale: float = 6.0, seed: int = 0):
    """Logits whose margin s tells how likely the argmax is right (sigmoid(3s - 2)), scaled so
    that the softmax claims far more confidence than that."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    s = rng.uniform(0, 3, n)
    right = rng.random(n) < 1 / (1 + np.exp(-(3 * s - 2)))
    pred = np.where(right, y, (y + rng.integers(1, k, n)) % k)
    logits = rng.normal(0, 0.3, (n, k))
    logits[np.arange(n), pred] += s
    return logits * scale, y


def nll(probs, y):
    return float(-np.mean(np.log(probs[np.arange(len(y)), y])))


def test_temperature_lowers_nll_on_overconfident_logits():
    logits, y = overconfident(2000)
    t = fit_temperature(logits, y)
    assert t > 2  # it had to cool the model down
    assert nll(softmax(logits, t), y) < 0.8 * nll(softmax(logits), y)
    # temperature never changes the prediction
    assert (softmax(logits, t).argmax(1) == logits.argmax(1)).all()
    # the minimum: nearby temperatures are worse
    for other in (t * 0.9, t * 1.1):
        assert nll(softmax(logits, t), y) <= nll(softmax(logits, other), y)


def test_temperature_equals_the_former_golden_section_fit_on_literal_logits():
    # the values the hand-written golden-section search (60 steps on log T) returned before
    # the fit moved to scipy's bounded minimize_scalar
    logits = np.array(
        [
            [2.0, 0.5, -1.0],
            [0.2, 1.5, 0.1],
            [3.0, -0.5, 0.0],
            [0.0, 0.3, 2.2],
            [1.0, 1.1, 0.9],
            [-0.5, 2.5, 0.5],
            [1.8, 0.0, 1.6],
            [0.1, -0.2, 0.4],
        ]
    )
    y = np.array([0, 1, 0, 2, 2, 1, 2, 0])
    assert fit_temperature(logits, y) == pytest.approx(0.48491902409904974, rel=1e-6)
    assert fit_temperature(4 * logits, y) == pytest.approx(1.9396760856908315, rel=1e-6)
    # a bound that excludes the minimum returns the bound
    assert fit_temperature(logits, y, lo=0.6) == pytest.approx(0.6, rel=1e-6)


def test_language_temperature_kept_only_where_it_helps():
    a_logits, a_y = overconfident(600, seed=1)  # needs cooling
    b_logits, b_y = overconfident(600, scale=1.0, seed=2)  # already under-confident
    logits, y = np.r_[a_logits, b_logits], np.r_[a_y, b_y]
    langs = np.array(["nl"] * 600 + ["en"] * 600)
    t = fit_temperature(logits, y)
    per_lang = fit_language_temperatures(logits, y, langs, t, min_rows=100)
    assert per_lang["nl"]["own"] and per_lang["en"]["own"]
    assert per_lang["nl"]["temperature"] > t > per_lang["en"]["temperature"]
    few = fit_language_temperatures(logits, y, langs, t, min_rows=1000)
    assert not few["nl"]["own"] and "global temperature" in few["nl"]["why"]
    head = {"temperature": t, "languages": per_lang}
    probs = calibrated_probs(logits, langs, head)
    np.testing.assert_allclose(
        probs[:600], softmax(a_logits, per_lang["nl"]["temperature"]), rtol=1e-5
    )


def test_lowest_safe_threshold_literal():
    # confidences sorted: .95 ok, .9 ok, .8 wrong, .7 ok, .6 wrong, .5 ok
    conf = np.array([0.7, 0.95, 0.5, 0.8, 0.9, 0.6])
    correct = np.array([True, True, True, False, True, False])
    # error rates going down the list: 0/1, 0/2, 1/3, 1/4, 2/5, 2/6
    assert lowest_safe_threshold(conf, correct, 0.25, "point") == (0.7, 0.25, 4)
    assert lowest_safe_threshold(conf, correct, 0.0, "point") == (0.9, 0.0, 2)
    assert lowest_safe_threshold(conf, correct, 0.5, "point") == (0.5, 2 / 6, 6)
    t, err, n = lowest_safe_threshold(np.array([0.9]), np.array([False]), 0.05)
    assert math.isinf(t) and math.isnan(err) and n == 0
    # tied confidences are decided together: no cut between the two 0.8s
    conf = np.array([0.9, 0.8, 0.8])
    right = np.array([True, True, False])
    assert lowest_safe_threshold(conf, right, 0.3, "point") == (0.9, 0.0, 1)
    assert lowest_safe_threshold(conf, right, 0.4, "point") == (0.8, 1 / 3, 3)


def test_upper_bound_rule_needs_enough_decisions():
    # 0 wrong in n: one-sided 95% Wilson upper bound = z^2 / (n + z^2), z = 1.645, which is
    # <= 0.05 from n = 52 on (2.706 / 54.7 = 0.0495; 51 gives 2.706 / 53.7 = 0.0504)
    conf = np.linspace(0.99, 0.5, 60)
    t, err, n = lowest_safe_threshold(conf, np.ones(60, bool), 0.05, "upper")
    assert (t, err, n) == (conf[-1], 0.0, 60)
    t, err, n = lowest_safe_threshold(conf[:51], np.ones(51, bool), 0.05, "upper")
    assert math.isinf(t) and n == 0
    t, _, n = lowest_safe_threshold(conf[:52], np.ones(52, bool), 0.05, "upper")
    assert n == 52 and t == conf[51]
    # the point rule would take all 51
    assert lowest_safe_threshold(conf[:51], np.ones(51, bool), 0.05, "point")[2] == 51


def test_thresholds_meet_the_target_on_the_data_they_were_fitted_on():
    logits, y = overconfident(3000, k=4, seed=3)
    probs = softmax(logits, fit_temperature(logits, y))
    labels = ["a", "b", "c", "d"]
    chosen = choose_thresholds(probs, y, labels, target=0.05, min_decisions=30)
    pred, conf = probs.argmax(1), probs.max(1)
    for k, label in enumerate(labels):
        entry = chosen[label]
        assert entry["how"] == "class"
        auto = (pred == k) & (conf >= entry["threshold"])
        assert auto.sum() > 0 and (y[auto] != k).mean() <= 0.05
    # a class with too few predictions falls back to the global threshold, and says so; its own
    # errors above it can only raise it
    sparse = choose_thresholds(probs, y, labels, target=0.05, min_decisions=10_000)
    assert {e["how"] for e in sparse.values()} <= {"global", "raised"}
    [global_t] = {e["threshold"] for e in sparse.values() if e["how"] == "global"}
    for k, label in enumerate(labels):
        entry = sparse[label]
        assert "global threshold" in entry["why"] and entry["threshold"] >= global_t
        auto = (pred == k) & (conf >= entry["threshold"])
        assert (y[auto] != k).mean() <= 0.05


def test_a_class_too_small_to_pass_the_bound_shares_the_global_threshold():
    """40 error-free predictions are above min_decisions (30) but fewer than the 52 the upper
    bound needs at 5%: on its own the class could never be automatic, so it takes the global
    threshold instead of none."""
    assert least_passing_decisions(0.05, "upper") == 52
    assert least_passing_decisions(0.05, "point") == 1
    assert least_passing_decisions(0.10, "upper") == 25
    rows = [(0, c) for c in np.linspace(0.99, 0.80, 300)] + [
        (1, c) for c in np.linspace(0.99, 0.9, 40)
    ]
    pred = np.array([r[0] for r in rows])
    conf = np.array([r[1] for r in rows])
    probs = np.stack([np.where(pred == 0, conf, 1 - conf), np.where(pred == 1, conf, 1 - conf)], 1)
    chosen = choose_thresholds(probs, pred, ["a", "b"], target=0.05, min_decisions=30)
    assert chosen["a"]["how"] == "class"
    assert chosen["b"]["how"] == "global" and "40 calib predictions < 52" in chosen["b"]["why"]
    assert chosen["b"]["threshold"] == pytest.approx(0.80)
    # the point rule needs no more than min_decisions: b gets its own threshold
    assert (
        choose_thresholds(probs, pred, ["a", "b"], 0.05, 30, bound="point")["b"]["how"] == "class"
    )


def test_a_sparse_class_with_its_own_errors_raises_the_global_threshold():
    """Three classes, too few predictions each for a threshold of their own (min_decisions
    1000): the pooled rows set the global threshold, and a class whose own decisions above it
    are wrong more than 5% of the time gets a higher one, or none."""
    rows = [(0, c, True) for c in np.linspace(0.99, 0.80, 300)]  # a: 300 right
    # b: right at 0.98-0.92, wrong at 0.91 and 0.89 -> 2 of 10 wrong at the global threshold
    rows += [(1, c, c not in (0.91, 0.89)) for c in (0.98, 0.97, 0.96, 0.95, 0.94, 0.93)]
    rows += [(1, c, c not in (0.91, 0.89)) for c in (0.92, 0.91, 0.90, 0.89)]
    rows += [(2, 0.99, False), (2, 0.95, True), (2, 0.9, True)]  # c: its surest call is wrong
    pred = np.array([r[0] for r in rows])
    conf = np.array([r[1] for r in rows])
    y = np.where([r[2] for r in rows], pred, (pred + 1) % 3)
    probs = np.repeat(((1 - conf) / 2)[:, None], 3, axis=1)
    probs[np.arange(len(rows)), pred] = conf
    chosen = choose_thresholds(probs, y, ["a", "b", "c"], target=0.05, min_decisions=1000)
    global_t = chosen["a"]["threshold"]
    assert chosen["a"]["how"] == "global" and global_t == pytest.approx(0.80)
    assert chosen["b"]["how"] == "raised" and chosen["b"]["threshold"] == pytest.approx(0.92)
    assert "2 of its 10 decisions there were wrong" in chosen["b"]["why"]
    assert chosen["c"]["how"] == "never" and math.isinf(chosen["c"]["threshold"])


def test_margin_rule_keeps_close_calls_manual():
    # rows 0 and 2 are close calls (gap .05 and .01) and right; row 1 is clear and wrong
    probs = np.array([[0.5, 0.45, 0.05], [0.8, 0.1, 0.1], [0.34, 0.33, 0.33]])
    y = np.array([0, 1, 0])
    loose = choose_thresholds(probs, y, ["a", "b", "c"], 0.5, 1, bound="point")
    assert loose["a"]["threshold"] == 0.34  # 1 wrong in 3: under the 0.5 target
    strict = choose_thresholds(probs, y, ["a", "b", "c"], target=0.5, min_decisions=1, margin=0.1)
    assert math.isinf(strict["a"]["threshold"])  # only the wrong row is left to decide


def test_out_of_scope_rows_count_as_wrong_automated_decisions():
    # three in-scope rows predicted right at .9/.8/.7, one out-of-scope row (y = -1) at .85
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.85, 0.15]])
    in_scope = choose_thresholds(probs[:3], np.array([0, 0, 0]), ["a", "b"], 0.3, 1, bound="point")
    assert in_scope["a"]["threshold"] == 0.7
    with_oos = choose_thresholds(probs, np.array([0, 0, 0, -1]), ["a", "b"], 0.3, 1, bound="point")
    # going down: .9 ok (0/1), .85 wrong (1/2), .8 (1/3 > .3), .7 (1/4 <= .3)
    assert with_oos["a"]["threshold"] == 0.7
    strict = choose_thresholds(probs, np.array([0, 0, 0, -1]), ["a", "b"], 0.2, 1, bound="point")
    assert strict["a"]["threshold"] == 0.9  # the out-of-scope row must stay below it


def two_languages(seed: int = 0):
    """Two-class logits: language `a` (1000 rows) is always right, language `b` (400 rows) is
    wrong 10% of the time at every confidence. Pooled, 2.9% are wrong."""
    rng = np.random.default_rng(seed)
    langs = np.array(["a"] * 1000 + ["b"] * 400)
    y = rng.integers(0, 2, len(langs))
    wrong = (langs == "b") & (rng.random(len(langs)) < 0.10)
    pred = np.where(wrong, 1 - y, y)
    conf = rng.uniform(0.6, 0.99, len(langs))
    probs = np.where(np.arange(2)[None, :] == pred[:, None], conf[:, None], 1 - conf[:, None])
    return np.log(probs), y, langs


def test_per_language_thresholds_hold_the_target_in_each_language():
    logits, y, langs = two_languages()
    cfg = CalibrateConfig(
        per_language_temperatures=False,
        per_language_thresholds=True,
        min_rows_per_language=60,
        fpr_target=0.05,
        min_decisions=30,
        margin=0.0,
        bound="upper",
    )
    head = calibrate_head(logits, y, langs, ["x", "y"], cfg, np.zeros(len(y), bool))
    assert set(head["language_thresholds"]) == {"a", "b"}
    probs = calibrated_probs(logits, langs, head)
    pred, conf = probs.argmax(1), probs.max(1)

    def wrong_share(thresholds: np.ndarray, rows: np.ndarray) -> tuple[float, int]:
        auto = rows & (conf >= thresholds[np.arange(len(y)), pred])
        return float((pred[auto] != y[auto]).mean()) if auto.any() else 0.0, int(auto.sum())

    pooled = row_thresholds({"thresholds": head["thresholds"]}, ["x", "y"], langs)
    per_language = row_thresholds(head, ["x", "y"], langs)
    # pooled, the thresholds pass on the mix but `b`'s automated decisions are 10% wrong
    assert wrong_share(pooled, langs == "b")[0] > 0.05
    # per language, `b` gets no threshold that passes (nothing automatic), `a` keeps its coverage
    assert wrong_share(per_language, langs == "b") == (0.0, 0)
    assert {e["how"] for e in head["language_thresholds"]["b"].values()} == {"never"}
    assert wrong_share(per_language, langs == "a")[1] >= wrong_share(pooled, langs == "a")[1]
    # a language with fewer rows than min_rows_per_language uses the pooled table
    few = calibrate_head(
        logits,
        y,
        langs,
        ["x", "y"],
        dataclasses.replace(cfg, min_rows_per_language=500),
        np.zeros(len(y), bool),
    )
    assert set(few["language_thresholds"]) == {"a"}
    np.testing.assert_array_equal(
        row_thresholds(few, ["x", "y"], langs)[langs == "b"], pooled[langs == "b"]
    )
    # switched off: the pooled table only
    off = calibrate_head(
        logits,
        y,
        langs,
        ["x", "y"],
        dataclasses.replace(cfg, per_language_thresholds=False),
        np.zeros(len(y), bool),
    )
    assert "language_thresholds" not in off


def test_calibration_file_round_trip_keeps_never_as_infinity(tmp_path):
    calibration = {
        "fpr_target": 0.05,
        "heads": {
            "intent": {
                "temperature": 1.5,
                "thresholds": {
                    "spam": {"threshold": math.inf, "how": "never"},
                    "praise": {"threshold": 0.8, "how": "class"},
                },
                "language_thresholds": {
                    "nl": {
                        "spam": {"threshold": 0.9, "how": "class"},
                        "praise": {"threshold": math.inf, "how": "never"},
                    }
                },
            }
        },
    }
    save_calibration(tmp_path / "c.json", calibration)
    assert '"threshold": null' in (tmp_path / "c.json").read_text()
    assert load_calibration(tmp_path / "c.json") == calibration
    with pytest.raises(FileNotFoundError, match="triage calibrate"):
        load_calibration(tmp_path / "missing.json")
