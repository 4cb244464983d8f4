"""Welch difference in means: Hillstrom's published spend figures, scipy's t-test, the normal
option, the relative lift interval and the edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from campaigns.uplift.means import mean_difference, mean_difference_from_summary

CONTROL_SEGMENT = "No E-Mail"

# shared/data/SOURCES.md section 4: (treated segment, treated, control, diff, low, high) of spend
HILLSTROM_SPEND = [
    ("Mens E-Mail", 1.422617, 0.652789, 0.769827, 0.485144, 1.054510),
    ("Womens E-Mail", 1.077202, 0.652789, 0.424412, 0.168960, 0.679865),
]


@pytest.mark.parametrize(
    ("segment", "treated", "control", "difference", "low", "high"), HILLSTROM_SPEND
)
def test_hillstrom_spend_reproduces_sources_table_to_four_decimals(
    hillstrom: pd.DataFrame,
    segment: str,
    treated: float,
    control: float,
    difference: float,
    low: float,
    high: float,
) -> None:
    treated_values = hillstrom.loc[hillstrom["segment"] == segment, "spend"]
    control_values = hillstrom.loc[hillstrom["segment"] == CONTROL_SEGMENT, "spend"]
    spend = mean_difference(
        treated=treated_values.to_numpy(), control=control_values.to_numpy(), interval="normal"
    )
    got = (spend.treated_mean, spend.control_mean, spend.difference, spend.ci_low, spend.ci_high)
    expected = (treated, control, difference, low, high)
    assert [round(value, 4) for value in got] == [round(value, 4) for value in expected]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_a_split_of_no_email_spend_covers_zero(hillstrom: pd.DataFrame, seed: int) -> None:
    control_arm = hillstrom.loc[hillstrom["segment"] == CONTROL_SEGMENT].reset_index(drop=True)
    first_half = np.random.default_rng(seed).permutation(len(control_arm)) < len(control_arm) // 2
    a, b = control_arm.loc[first_half], control_arm.loc[~first_half]
    spend = mean_difference(treated=a["spend"].to_numpy(), control=b["spend"].to_numpy())
    assert spend.ci_low <= 0.0 <= spend.ci_high


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
