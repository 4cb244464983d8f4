"""Uplift evaluation: metrics with bootstrap intervals, random and risk beside the models, and
the champion/challenger comparison (`compare_methods`)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from campaigns.uplift.evaluation import (
    compare_methods,
    evaluate_actions,
    evaluate_scores,
    paired_difference,
    validation_key,
    validation_split,
)
from campaigns.uplift.models import CONTROL_ARM, qini_coefficient, uplift_at_k


def _trial(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A randomised trial where the offer helps only customers with x > 0 (+20 points)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    treatment = rng.integers(0, 2, n)
    effect = np.where(x > 0, 0.2, 0.0)
    outcome = (rng.random(n) < 0.3 + effect * treatment).astype(int)
    return x, treatment, outcome, effect


def test_point_estimates_equal_the_plain_metrics_with_tied_scores() -> None:
    x, treatment, outcome, _ = _trial(3_000, seed=1)
    score = np.round(x, 1)  # many ties: tied customers enter the curve together
    got = evaluate_scores(y=outcome, treatment=treatment, scores={"m": score}, n_boot=20)["m"]
    assert got.point["qini"] == pytest.approx(
        qini_coefficient(y=outcome, treatment=treatment, score=score)
    )
    assert got.point["uplift_at_k"] == pytest.approx(
        uplift_at_k(y=outcome, treatment=treatment, score=score, k=0.3)
    )
    assert got.draws["qini"].shape == (20,)


def test_perfect_ranking_scores_one_and_random_targeting_zero() -> None:
    _, treatment, outcome, _ = _trial(4_000, seed=2)
    perfect = outcome * treatment - outcome * (1 - treatment)
    got = evaluate_scores(
        y=outcome,
        treatment=treatment,
        scores={"perfect": perfect, "noise": np.random.default_rng(3).random(4_000)},
    )
    assert got["perfect"].point["qini"] == pytest.approx(1.0)
    assert got["perfect"].point["auuc"] == pytest.approx(1.0)
    assert got["perfect"].interval("qini").low == pytest.approx(1.0)
    noise = got["noise"].interval("qini")
    assert noise.low < 0 < noise.high
    assert abs(noise.value) < 0.15
    random = got["random"]
    assert random.point["qini"] == random.point["auuc"] == 0.0
    overall = outcome[treatment == 1].mean() - outcome[treatment == 0].mean()
    assert random.point["uplift_at_k"] == pytest.approx(overall)


def test_a_useful_score_beats_random_beyond_noise() -> None:
    x, treatment, outcome, _ = _trial(6_000, seed=4)
    got = evaluate_scores(y=outcome, treatment=treatment, scores={"x": x}, k=0.3)
    model, random = got["x"], got["random"]
    # Top 30 % are all x > 0 (true uplift 0.20); everyone: 0.10.
    assert model.point["uplift_at_k"] == pytest.approx(0.2, abs=0.05)
    assert random.point["uplift_at_k"] == pytest.approx(0.1, abs=0.03)
    assert paired_difference(model, random, "uplift_at_k").low > 0
    # Normalised by the perfect ranking of *outcomes*, so a perfect *effect* ranking is far
    # below 1 when most outcomes happen anyway (here ~0.09).
    assert model.interval("qini").low > 0.03
    report = model.to_dict()
    assert set(report) >= {"qini", "auuc", "uplift_at_30", "curve", "rows"}
    assert report["curve"]["share"][0] == 0.0 and report["curve"]["share"][-1] == 1.0
    # The Qini curve ends where the random line ends.
    assert report["curve"]["qini"][-1] == pytest.approx(random.to_dict()["curve"]["qini"][-1])


def test_the_95_percent_interval_covers_the_true_uplift_about_95_percent_of_the_time() -> None:
    covered = 0
    trials = 40
    for seed in range(trials):
        _, treatment, outcome, effect = _trial(1_000, seed=100 + seed)
        assert effect.max() == 0.2  # half the customers (x > 0) get +0.2: overall +0.1
        random = evaluate_scores(y=outcome, treatment=treatment, scores={}, n_boot=200, seed=seed)[
            "random"
        ]
        interval = random.interval("uplift_at_k")
        covered += interval.low <= 0.1 <= interval.high  # the true overall uplift
    assert covered >= 34  # 95 % of 40 = 38; a binomial 5 % lower tail is ~35


def test_same_seed_same_intervals_and_identical_scores_differ_by_exactly_zero() -> None:
    x, treatment, outcome, _ = _trial(2_000, seed=5)
    first = evaluate_scores(y=outcome, treatment=treatment, scores={"a": x, "b": x}, seed=7)
    again = evaluate_scores(y=outcome, treatment=treatment, scores={"a": x}, seed=7)
    other = evaluate_scores(y=outcome, treatment=treatment, scores={"a": x}, seed=8)
    np.testing.assert_array_equal(first["a"].draws["qini"], again["a"].draws["qini"])
    assert not np.array_equal(first["a"].draws["qini"], other["a"].draws["qini"])
    difference = paired_difference(first["a"], first["b"], "qini")
    assert (difference.value, difference.low, difference.high) == (0.0, 0.0, 0.0)


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="score 'm' has 3 values for 4 rows"):
        evaluate_scores(y=[0, 1, 0, 1], treatment=[0, 1, 1, 0], scores={"m": [1, 2, 3]})
    with pytest.raises(ValueError, match="treatment must contain only 0 and 1"):
        evaluate_scores(y=[0, 1], treatment=[0, 2], scores={})
    with pytest.raises(ValueError, match="both arms"):
        evaluate_scores(y=[0, 1], treatment=[1, 1], scores={})


def _three_actions(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Shared control plus three actions: one helps x > 0, one helps everyone a little, one
    harms x < 0 (customers put off by contact). Risk: high for x < 0."""
    rng = np.random.default_rng(seed)
    features = pd.DataFrame(
        {"x": rng.normal(size=n), "noise": rng.normal(size=n)},
        index=pd.RangeIndex(1_000, 1_000 + n, name="customer_id"),
    )
    arm = rng.choice([CONTROL_ARM, "rule-1", "rule-2", "rule-3"], n)
    x = features["x"].to_numpy()
    effect = np.select(
        [arm == "rule-1", arm == "rule-2", arm == "rule-3"],
        [np.where(x > 0, 0.25, 0.0), np.full(n, 0.05), np.where(x < 0, -0.2, 0.0)],
        0.0,
    )
    outcome = (rng.random(n) < 0.4 + effect).astype(int)
    risk = 1 / (1 + np.exp(x))
    return features, arm, outcome, risk


def test_each_action_is_evaluated_on_its_rows_and_the_control_rows() -> None:
    features, arm, outcome, risk = _three_actions(8_000, seed=6)
    x = features["x"].to_numpy()
    predictions = {
        "truth": pd.DataFrame(
            {"rule-1": np.where(x > 0, 0.25, 0), "rule-2": 0.05, "rule-3": np.where(x < 0, -0.2, 0)}
        )
    }
    got = evaluate_actions(predictions=predictions, arm=arm, outcome=outcome, risk=risk, n_boot=100)
    rows = {(r["action"], r["method"]): r for r in got.reports}
    control = int((arm == CONTROL_ARM).sum())
    for action in ("rule-1", "rule-2", "rule-3"):
        for method in ("truth", "random", "risk"):
            report = rows[(action, method)]
            assert report["control"] == control
            assert report["treated"] == int((arm == action).sum())
    # Risk targets x < 0 first: the wrong customers for rule-1, the harmed ones for rule-3.
    assert rows[("rule-1", "truth")]["vs_risk"]["qini"]["low"] > 0
    assert rows[("rule-1", "risk")]["qini"]["value"] < 0
    assert (
        rows[("rule-3", "truth")]["uplift_at_30"]["value"]
        > rows[("rule-3", "risk")]["uplift_at_30"]["value"]
    )
    json.dumps(got.reports)
    # A customer without a churn score is targeted last by risk, not an error.
    risk[:10] = np.nan
    again = evaluate_actions(predictions=predictions, arm=arm, outcome=outcome, risk=risk)
    assert len(again.reports) == len(got.reports)


def test_validation_split_is_stratified_and_reproducible_and_its_key_ignores_order() -> None:
    features, arm, outcome, _ = _three_actions(4_000, seed=8)
    valid = validation_split(arm=arm, outcome=outcome, validation_share=0.5, seed=42)
    again = validation_split(arm=arm, outcome=outcome, validation_share=0.5, seed=42)
    np.testing.assert_array_equal(valid, again)
    for action in ("control", "rule-1"):
        for y in (0, 1):
            cell = (arm == action) & (outcome == y)
            assert abs(valid[cell].mean() - 0.5) < 0.01
    ids = features.index[valid]
    assert validation_key(ids) == validation_key(ids[::-1]) != validation_key(ids[1:])
    with pytest.raises(ValueError, match=r"arm 'rule-9' with outcome \d has 1"):
        validation_split(arm=[*arm[:-1], "rule-9"], outcome=outcome, validation_share=0.5, seed=42)


def test_compare_methods_picks_the_best_mean_qini_and_refits_it_on_every_row() -> None:
    features, arm, outcome, risk = _three_actions(6_000, seed=9)
    revenue = outcome * np.random.default_rng(10).gamma(2.0, 20.0, len(outcome))
    comparison = compare_methods(
        features=features, arm=arm, outcome=outcome, revenue=revenue, risk=risk, n_boot=50
    )
    assert comparison.best == max(comparison.mean_qini, key=comparison.mean_qini.__getitem__)
    assert set(comparison.mean_qini) == {"t_learner", "dr_learner", "class_transformation"}
    assert comparison.model.method == comparison.best
    assert comparison.model.actions == ("rule-1", "rule-2", "rule-3")
    learner = comparison.model.learners["rule-1"].to_dict()
    assert learner["treated_n"] == int((arm == "rule-1").sum())
    assert learner["control_n"] == int((arm == CONTROL_ARM).sum())
    assert comparison.validation_rows == 3_000
    # Rows: (3 methods + random + risk) × 3 actions × 2 outcomes.
    assert len(comparison.reports) == 5 * 3 * 2
    best = [
        r
        for r in comparison.reports
        if r["method"] == comparison.best and r["action"] == "rule-1" and r["outcome"] == "binary"
    ]
    assert best[0]["vs_risk"]["qini"]["low"] > 0
    # ~750 rows per arm and action in validation: the paired interval against random is wide.
    vs_random = best[0]["vs_random"]["uplift_at_30"]
    assert vs_random["value"] > 0.03 and vs_random["low"] < vs_random["value"] < vs_random["high"]
    assert comparison.revenue_model is not None
    uplift = comparison.model.predict_uplift(features.head(5))
    assert list(uplift.index) == list(features.index[:5])
    json.dumps(comparison.reports)


def test_compare_methods_refuses_an_unknown_method() -> None:
    features, arm, outcome, _ = _three_actions(200, seed=11)
    with pytest.raises(ValueError, match="methods must be among"):
        compare_methods(features=features, arm=arm, outcome=outcome, methods=("s_learner",))
