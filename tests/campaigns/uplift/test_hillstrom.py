"""Issue 16's acceptance test on real data: Hillstrom's randomised e-mail test (Womens E-Mail vs
No E-Mail, outcome visit), 50/50 split stratified on treatment × outcome, seed 42."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from campaigns.uplift.evaluation import MethodComparison, compare_methods, paired_difference

OUTCOMES = ["visit", "conversion", "spend"]


@pytest.fixture(scope="module")
def comparison(hillstrom: pd.DataFrame) -> MethodComparison:
    frame = hillstrom[hillstrom["segment"].isin(["Womens E-Mail", "No E-Mail"])]
    frame = frame.reset_index(drop=True)
    arm = np.where(frame["segment"] == "Womens E-Mail", "womens-email", "control")
    features = pd.get_dummies(frame.drop(columns=["segment", *OUTCOMES]), dtype=float)
    return compare_methods(
        features=features,
        arm=arm,
        outcome=frame["visit"].to_numpy(),
        revenue=frame["spend"].to_numpy(),
        # Not a churn model: a stand-in "risk" (days since the last purchase) to show the row.
        risk=frame["recency"].to_numpy(dtype=float),
        validation_share=0.5,
        seed=42,
        n_boot=200,
    )


def _row(comparison: MethodComparison, method: str, outcome: str = "binary") -> dict:
    (row,) = [r for r in comparison.reports if r["method"] == method and r["outcome"] == outcome]
    return row


def test_best_model_targets_visits_well_above_random_on_hillstrom(
    comparison: MethodComparison,
) -> None:
    best = _row(comparison, comparison.best)
    random = _row(comparison, "random")
    # Issue 16: uplift at the top 30 % ≥ 0.075 and normalised Qini ≥ 0.06 (reference run:
    # class transformation 0.0778 / 0.068, T-learner 0.0748 / 0.066, random 0.0446).
    assert best["uplift_at_30"]["value"] >= 0.075, best
    assert best["qini"]["value"] >= 0.06, best
    assert best["qini"]["low"] < best["qini"]["value"] < best["qini"]["high"]
    assert 0.035 <= random["uplift_at_30"]["value"] <= 0.055
    # Better than random beyond noise: the paired interval of the difference excludes 0.
    assert best["vs_random"]["uplift_at_30"]["low"] > 0
    assert comparison.validation_rows == 21_347  # half of the 42,693 rows of the two arms


def test_best_model_is_not_below_the_t_learner_baseline_beyond_noise(
    comparison: MethodComparison,
) -> None:
    baseline = _row(comparison, "t_learner")
    assert comparison.mean_qini[comparison.best] >= baseline["qini"]["value"]
    best = comparison.evaluations[("binary", "womens-email", comparison.best)]
    t_learner = comparison.evaluations[("binary", "womens-email", "t_learner")]
    for metric in ("uplift_at_k", "qini"):
        difference = paired_difference(best, t_learner, metric)
        assert difference.high >= 0, (metric, difference)
        # Paired: much narrower than either model's own interval.
        own = best.interval(metric)
        assert difference.high - difference.low < own.high - own.low


def test_comparison_report_is_json_and_the_champion_is_refitted_on_every_row(
    comparison: MethodComparison,
) -> None:
    json.dumps(comparison.reports)
    methods = {(r["method"], r["outcome"]) for r in comparison.reports}
    for outcome in ("binary", "revenue"):
        for method in ("t_learner", "dr_learner", "class_transformation", "random", "risk"):
            assert (method, outcome) in methods
    learner = comparison.model.learners["womens-email"].to_dict()
    assert learner["treated_n"] + learner["control_n"] == 42_693
    assert comparison.training_rows + comparison.validation_rows == 42_693
    assert len(comparison.validation_key) == 64
    # Revenue (spend, dollars): a separate choice and a revenue model per action.
    assert comparison.revenue_model is not None
    assert comparison.revenue_model.kind == "revenue"
    revenue_best = _row(comparison, comparison.revenue_best or "", "revenue")
    assert revenue_best["uplift_at_30"]["value"] > 0
