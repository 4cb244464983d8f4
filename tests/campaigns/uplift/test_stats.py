"""Uplift statistics: known answers (Hillstrom, Newcombe 1998, scipy) and simulated coverage."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from campaigns.uplift.stats import (
    _newcombe_bounds,
    _normal_bounds,
    _proportion_p_values,
    campaign_economics,
    incremental_customers,
    incremental_revenue,
    is_binary,
    mean_difference,
    mean_difference_from_summary,
    proportion_difference,
    uplift_breakdown,
)

CONTROL_SEGMENT = "No E-Mail"

# shared/data/SOURCES.md section 4: (treated segment, outcome, treated, control, diff, low, high)
HILLSTROM_TABLE = [
    ("Mens E-Mail", "visit", 0.182757, 0.106167, 0.076590, 0.069953, 0.083226),
    ("Mens E-Mail", "conversion", 0.012531, 0.005726, 0.006805, 0.005000, 0.008610),
    ("Mens E-Mail", "spend", 1.422617, 0.652789, 0.769827, 0.485144, 1.054510),
    ("Womens E-Mail", "visit", 0.151400, 0.106167, 0.045233, 0.038894, 0.051573),
    ("Womens E-Mail", "conversion", 0.008837, 0.005726, 0.003111, 0.001499, 0.004724),
    ("Womens E-Mail", "spend", 1.077202, 0.652789, 0.424412, 0.168960, 0.679865),
]


# ---------------------------------------------------------------------------------------------
# Hillstrom: a real randomised e-mail test with a published answer
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("segment", "outcome", "treated", "control", "difference", "low", "high"), HILLSTROM_TABLE
)
def test_hillstrom_uplift_reproduces_sources_table_to_four_decimals(
    hillstrom: pd.DataFrame,
    segment: str,
    outcome: str,
    treated: float,
    control: float,
    difference: float,
    low: float,
    high: float,
) -> None:
    treated_values = hillstrom.loc[hillstrom["segment"] == segment, outcome]
    control_values = hillstrom.loc[hillstrom["segment"] == CONTROL_SEGMENT, outcome]
    got: tuple[float, ...]
    if outcome == "spend":
        spend = mean_difference(
            treated=treated_values.to_numpy(), control=control_values.to_numpy(), interval="normal"
        )
        got = (
            spend.treated_mean,
            spend.control_mean,
            spend.difference,
            spend.ci_low,
            spend.ci_high,
        )
    else:
        rate = proportion_difference(
            treated_successes=int(treated_values.sum()),
            treated_n=len(treated_values),
            control_successes=int(control_values.sum()),
            control_n=len(control_values),
            interval="normal",
        )
        assert rate.test == "pooled_z"
        got = (rate.treated_rate, rate.control_rate, rate.difference, rate.ci_low, rate.ci_high)
    expected = (treated, control, difference, low, high)
    assert [round(value, 4) for value in got] == [round(value, 4) for value in expected]


def test_hillstrom_email_effect_on_visits_is_significant(hillstrom: pd.DataFrame) -> None:
    control = hillstrom.loc[hillstrom["segment"] == CONTROL_SEGMENT, "visit"]
    treated = hillstrom.loc[hillstrom["segment"] == "Mens E-Mail", "visit"]
    result = proportion_difference(
        treated_successes=int(treated.sum()),
        treated_n=len(treated),
        control_successes=int(control.sum()),
        control_n=len(control),
    )
    assert result.p_value < 1e-6
    assert result.relative_lift is not None
    assert result.relative_lift == pytest.approx(0.182757 / 0.106167 - 1, abs=1e-4)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_a_split_of_no_email_arm_covers_zero(hillstrom: pd.DataFrame, seed: int) -> None:
    control_arm = hillstrom.loc[hillstrom["segment"] == CONTROL_SEGMENT].reset_index(drop=True)
    first_half = np.random.default_rng(seed).permutation(len(control_arm)) < len(control_arm) // 2
    a, b = control_arm.loc[first_half], control_arm.loc[~first_half]
    for outcome in ("visit", "conversion"):
        for interval in ("newcombe", "normal"):
            result = proportion_difference(
                treated_successes=int(a[outcome].sum()),
                treated_n=len(a),
                control_successes=int(b[outcome].sum()),
                control_n=len(b),
                interval=interval,
            )
            assert result.ci_low <= 0.0 <= result.ci_high, (outcome, interval, result)
    spend = mean_difference(treated=a["spend"].to_numpy(), control=b["spend"].to_numpy())
    assert spend.ci_low <= 0.0 <= spend.ci_high


# ---------------------------------------------------------------------------------------------
# Simulated coverage and size (vectorised: thousands of experiments in one call)
# ---------------------------------------------------------------------------------------------

SIMULATIONS = 4000
ARM_N = 2000


@pytest.mark.parametrize("bounds", [_newcombe_bounds, _normal_bounds])
def test_95_percent_interval_covers_true_effect_about_95_percent_of_the_time(
    bounds: Callable[..., tuple[np.ndarray, np.ndarray]],
) -> None:
    rng = np.random.default_rng(20240501)
    treated = rng.binomial(ARM_N, 0.12, SIMULATIONS)
    control = rng.binomial(ARM_N, 0.10, SIMULATIONS)
    low, high = bounds(treated, ARM_N, control, ARM_N, sps.norm.ppf(0.975))
    true_effect = 0.12 - 0.10
    coverage = np.mean((low <= true_effect) & (true_effect <= high))
    assert 0.935 <= coverage <= 0.965, coverage


def test_false_positive_rate_with_no_effect_is_about_five_percent() -> None:
    rng = np.random.default_rng(7)
    treated = rng.binomial(ARM_N, 0.10, SIMULATIONS)
    control = rng.binomial(ARM_N, 0.10, SIMULATIONS)
    p_values, used_fisher = _proportion_p_values(treated, ARM_N, control, ARM_N)
    assert not used_fisher.any()
    rejection_rate = np.mean(p_values < 0.05)
    assert 0.035 <= rejection_rate <= 0.065, rejection_rate


def test_scalar_function_agrees_with_vectorised_core() -> None:
    rng = np.random.default_rng(3)
    treated = rng.binomial(ARM_N, 0.12, 20)
    control = rng.binomial(ARM_N, 0.10, 20)
    z = sps.norm.ppf(0.975)
    low, high = _newcombe_bounds(treated, ARM_N, control, ARM_N, z)
    p_values, _ = _proportion_p_values(treated, ARM_N, control, ARM_N)
    for index in range(20):
        result = proportion_difference(
            treated_successes=int(treated[index]),
            treated_n=ARM_N,
            control_successes=int(control[index]),
            control_n=ARM_N,
        )
        assert result.ci_low == pytest.approx(low[index])
        assert result.ci_high == pytest.approx(high[index])
        assert result.p_value == pytest.approx(p_values[index])


# ---------------------------------------------------------------------------------------------
# Proportions: known values, small counts, edge cases
# ---------------------------------------------------------------------------------------------


def test_newcombe_interval_matches_newcombe_1998_worked_example() -> None:
    # Newcombe (1998), Stat Med 17:873, example (a): 56/70 vs 48/80 -> 0.0524 to 0.3339.
    result = proportion_difference(
        treated_successes=56, treated_n=70, control_successes=48, control_n=80
    )
    assert (round(result.ci_low, 4), round(result.ci_high, 4)) == (0.0524, 0.3339)


def test_large_counts_use_pooled_z_test_equal_to_uncorrected_chi_square() -> None:
    result = proportion_difference(
        treated_successes=250, treated_n=2000, control_successes=200, control_n=2000
    )
    chi2 = sps.chi2_contingency([[250, 1750], [200, 1800]], correction=False)
    assert result.test == "pooled_z"
    assert result.p_value == pytest.approx(chi2.pvalue, rel=1e-9)


@pytest.mark.parametrize(
    ("treated_successes", "treated_n", "control_successes", "control_n"),
    [(3, 40, 0, 38), (7, 200, 1, 25), (1, 10, 4, 12)],
)
def test_small_expected_counts_use_fisher_exact_test(
    treated_successes: int, treated_n: int, control_successes: int, control_n: int
) -> None:
    result = proportion_difference(
        treated_successes=treated_successes,
        treated_n=treated_n,
        control_successes=control_successes,
        control_n=control_n,
    )
    table = [
        [treated_successes, treated_n - treated_successes],
        [control_successes, control_n - control_successes],
    ]
    assert result.test == "fisher_exact"
    assert "Fisher" in result.method
    assert result.p_value == pytest.approx(sps.fisher_exact(table).pvalue, rel=1e-12)


@pytest.mark.parametrize(
    ("treated_successes", "control_successes"), [(130, 100), (0, 5), (40, 40), (3, 60), (50, 1)]
)
def test_relative_lift_interval_contains_point_estimate(
    treated_successes: int, control_successes: int
) -> None:
    result = proportion_difference(
        treated_successes=treated_successes,
        treated_n=1000,
        control_successes=control_successes,
        control_n=900,
    )
    assert result.relative_lift is not None
    assert result.relative_lift_ci_low is not None and result.relative_lift_ci_high is not None
    assert result.relative_lift_ci_low <= result.relative_lift <= result.relative_lift_ci_high
    assert result.relative_lift_ci_low >= -1.0
    assert result.relative_lift == pytest.approx(
        (treated_successes / 1000) / (control_successes / 900) - 1
    )


def test_relative_lift_is_none_when_control_rate_is_zero() -> None:
    result = proportion_difference(
        treated_successes=5, treated_n=100, control_successes=0, control_n=100
    )
    assert result.relative_lift is None
    assert result.relative_lift_ci_low is None and result.relative_lift_ci_high is None


def test_newcombe_interval_is_not_degenerate_when_both_rates_are_zero() -> None:
    newcombe = proportion_difference(
        treated_successes=0, treated_n=50, control_successes=0, control_n=50
    )
    normal = proportion_difference(
        treated_successes=0, treated_n=50, control_successes=0, control_n=50, interval="normal"
    )
    assert newcombe.ci_low < 0.0 < newcombe.ci_high
    assert (normal.ci_low, normal.ci_high) == (0.0, 0.0)
    assert newcombe.p_value == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"treated_successes": 5, "treated_n": 0, "control_successes": 0, "control_n": 10},
        {"treated_successes": 11, "treated_n": 10, "control_successes": 0, "control_n": 10},
        {"treated_successes": 1, "treated_n": 10, "control_successes": -1, "control_n": 10},
        {"treated_successes": 1, "treated_n": 10, "control_successes": 1, "control_n": 10,
         "alpha": 1.5},
        {"treated_successes": 1, "treated_n": 10, "control_successes": 1, "control_n": 10,
         "interval": "wald"},
    ],
)  # fmt: skip
def test_proportion_difference_rejects_impossible_input(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        proportion_difference(**kwargs)  # type: ignore[arg-type]


def test_result_to_dict_is_json_serialisable() -> None:
    result = proportion_difference(
        treated_successes=30, treated_n=100, control_successes=20, control_n=100
    )
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["difference"] == pytest.approx(0.10)
    assert payload["method"] == result.method


# ---------------------------------------------------------------------------------------------
# Means
# ---------------------------------------------------------------------------------------------


def test_welch_t_option_matches_scipy_unequal_variance_t_test() -> None:
    rng = np.random.default_rng(11)
    treated = rng.gamma(2.0, 30.0, size=35)
    control = rng.gamma(2.0, 22.0, size=18)
    result = mean_difference(treated=treated, control=control)
    scipy_result = sps.ttest_ind(treated, control, equal_var=False)
    scipy_interval = scipy_result.confidence_interval(confidence_level=0.95)
    assert result.interval == "welch_t"
    assert result.p_value == pytest.approx(scipy_result.pvalue, rel=1e-10)
    assert result.ci_low == pytest.approx(scipy_interval.low, rel=1e-10)
    assert result.ci_high == pytest.approx(scipy_interval.high, rel=1e-10)
    assert result.degrees_of_freedom == pytest.approx(scipy_result.df, rel=1e-10)


def test_normal_option_uses_z_and_is_narrower_than_t_for_small_samples() -> None:
    rng = np.random.default_rng(12)
    treated, control = rng.normal(10, 3, 12), rng.normal(9, 4, 15)
    t_result = mean_difference(treated=treated, control=control, interval="welch_t")
    z_result = mean_difference(treated=treated, control=control, interval="normal")
    se = np.sqrt(treated.var(ddof=1) / 12 + control.var(ddof=1) / 15)
    assert z_result.ci_high - z_result.ci_low == pytest.approx(2 * sps.norm.ppf(0.975) * se)
    assert z_result.p_value == pytest.approx(2 * sps.norm.sf(abs(z_result.difference) / se))
    assert z_result.degrees_of_freedom is None
    assert (z_result.ci_high - z_result.ci_low) < (t_result.ci_high - t_result.ci_low)


def test_mean_relative_lift_interval_contains_point_estimate() -> None:
    rng = np.random.default_rng(13)
    result = mean_difference(treated=rng.exponential(12, 500), control=rng.exponential(10, 400))
    assert result.relative_lift is not None
    assert result.relative_lift_ci_low is not None and result.relative_lift_ci_high is not None
    assert result.relative_lift_ci_low < result.relative_lift < result.relative_lift_ci_high


def test_mean_difference_refuses_missing_values_and_tiny_arms() -> None:
    with pytest.raises(ValueError, match="NaN"):
        mean_difference(treated=[1.0, np.nan, 2.0], control=[1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2"):
        mean_difference(treated=[1.0], control=[1.0, 2.0])


def test_constant_arms_give_exact_answer() -> None:
    result = mean_difference_from_summary(
        treated_mean=5.0,
        treated_var=0.0,
        treated_n=10,
        control_mean=5.0,
        control_var=0.0,
        control_n=10,
    )
    assert (result.difference, result.ci_low, result.ci_high, result.p_value) == (0, 0, 0, 1.0)


# ---------------------------------------------------------------------------------------------
# Money
# ---------------------------------------------------------------------------------------------


def _revenue_uplift() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(21)
    treated = rng.exponential(12.0, 5000) * rng.binomial(1, 0.3, 5000)
    control = rng.exponential(10.0, 1000) * rng.binomial(1, 0.3, 1000)
    return treated, control


def test_incremental_revenue_and_customers_scale_the_difference_by_treated_n() -> None:
    treated, control = _revenue_uplift()
    revenue = mean_difference(treated=treated, control=control)
    retention = proportion_difference(
        treated_successes=1300, treated_n=5000, control_successes=220, control_n=1000
    )
    money = incremental_revenue(uplift=revenue, treated_n=5000)
    customers = incremental_customers(uplift=retention, treated_n=5000)
    assert money.estimate == pytest.approx(revenue.difference * 5000)
    assert (money.ci_low, money.ci_high) == pytest.approx(
        (revenue.ci_low * 5000, revenue.ci_high * 5000)
    )
    assert customers.estimate == pytest.approx(0.04 * 5000)
    assert customers.ci_low < customers.estimate < customers.ci_high


def test_campaign_economics_roi_and_its_interval() -> None:
    treated, control = _revenue_uplift()
    revenue = mean_difference(treated=treated, control=control)
    retention = proportion_difference(
        treated_successes=1300, treated_n=5000, control_successes=220, control_n=1000
    )
    economics = campaign_economics(
        revenue_uplift=revenue,
        treated_n=5000,
        offer_cost_total=2000.0,
        message_cost_total=500.0,
        retention_uplift=retention,
    )
    incremental = revenue.difference * 5000
    assert economics.total_cost == 2500.0
    assert economics.net_incremental_revenue == pytest.approx(incremental - 2500.0)
    assert economics.roi == pytest.approx((incremental - 2500.0) / 2500.0)
    assert economics.roi is not None
    assert economics.roi_ci_low is not None and economics.roi_ci_high is not None
    assert economics.roi_ci_low < economics.roi < economics.roi_ci_high
    assert economics.roi_ci_low == pytest.approx((revenue.ci_low * 5000 - 2500.0) / 2500.0)
    assert economics.cost_per_incremental_customer == pytest.approx(2500.0 / 200.0)
    json.dumps(economics.to_dict())


def test_roi_is_none_without_cost() -> None:
    treated, control = _revenue_uplift()
    economics = campaign_economics(
        revenue_uplift=mean_difference(treated=treated, control=control),
        treated_n=5000,
        offer_cost_total=0.0,
        message_cost_total=0.0,
    )
    assert economics.roi is None and economics.roi_ci_low is None
    assert economics.incremental_customers is None


# ---------------------------------------------------------------------------------------------
# Breakdown by rule / tier / channel
# ---------------------------------------------------------------------------------------------


def _campaign_frame() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 6000
    tier = rng.choice(["high", "critical", "medium"], size=n)
    arm = np.where(rng.random(n) < 0.2, "control", "treatment")
    base = np.select([tier == "critical", tier == "high"], [0.4, 0.6], 0.8)
    effect = np.where(arm == "treatment", 0.08, 0.0)
    outcome = (rng.random(n) < base + effect).astype(int)
    revenue = outcome * rng.gamma(2.0, 25.0, n)
    frame = pd.DataFrame({"arm": arm, "outcome": outcome, "revenue": revenue, "tier": tier})
    # A tier that only exists on the treatment side (e.g. a rule with a 0% holdout).
    extra = pd.DataFrame(
        {"arm": ["treatment"] * 3, "outcome": [1, 0, 1], "revenue": [5.0, 0, 7], "tier": "vip"}
    )
    return pd.concat([frame, extra], ignore_index=True)


def test_breakdown_matches_per_group_direct_computation() -> None:
    frame = _campaign_frame()
    breakdown = uplift_breakdown(frame=frame, by="tier")
    assert [group.group for group in breakdown.groups] == ["critical", "high", "medium", "vip"]
    for group in breakdown.groups[:3]:
        rows = frame[frame["tier"] == group.group]
        treated = rows[rows["arm"] == "treatment"]
        control = rows[rows["arm"] == "control"]
        expected = proportion_difference(
            treated_successes=int(treated["outcome"].sum()),
            treated_n=len(treated),
            control_successes=int(control["outcome"].sum()),
            control_n=len(control),
        )
        expected_revenue = mean_difference(
            treated=treated["revenue"].to_numpy(), control=control["revenue"].to_numpy()
        )
        assert group.retention == expected
        assert group.revenue is not None
        assert group.revenue.difference == pytest.approx(expected_revenue.difference)
        assert group.revenue.ci_low == pytest.approx(expected_revenue.ci_low)
        assert group.revenue.p_value == pytest.approx(expected_revenue.p_value)
    vip = breakdown.groups[3]
    assert (vip.treated_n, vip.control_n, vip.retention, vip.note) == (
        3,
        0,
        None,
        "no control customers",
    )
    json.dumps(breakdown.to_dict())


def test_breakdown_names_missing_columns_and_unknown_arms() -> None:
    frame = _campaign_frame()
    with pytest.raises(ValueError, match="channel"):
        uplift_breakdown(frame=frame, by="channel")
    frame.loc[0, "arm"] = "holdout"
    with pytest.raises(ValueError, match="holdout"):
        uplift_breakdown(frame=frame, by="tier")


def test_breakdown_keeps_rows_with_missing_group_value() -> None:
    frame = _campaign_frame()
    frame["tier"] = frame["tier"].astype(object)
    frame.loc[frame.index[:300], "tier"] = None
    breakdown = uplift_breakdown(frame=frame, by="tier", revenue_column=None)
    assert sum(g.treated_n + g.control_n for g in breakdown.groups) == len(frame)
    assert None in [group.group for group in breakdown.groups]


# ---------------------------------------------------------------------------------------------
# Outcome type detection
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 1, 1, 0], True),
        ([0.0, 1.0, np.nan], True),
        ([True, False], True),
        (pd.Series(["0", "1"]), True),
        ([0, 0, 0], True),
        ([0, 1, 2], False),
        ([0.0, 0.5, 1.0], False),
        (["yes", "no"], False),
        ([], False),
        ([np.nan, np.nan], False),
    ],
)
def test_is_binary(values: object, expected: bool) -> None:
    assert is_binary(values) is expected  # type: ignore[arg-type]
