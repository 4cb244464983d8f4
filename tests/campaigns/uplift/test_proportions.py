"""Difference in proportions: known answers (Hillstrom, Newcombe 1998, scipy), simulated coverage
and size, small counts and edge cases."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from campaigns.uplift.proportions import (
    _newcombe_bounds,
    _normal_bounds,
    _proportion_p_values,
    is_binary,
    proportion_difference,
)

CONTROL_SEGMENT = "No E-Mail"

# shared/data/SOURCES.md section 4: (treated segment, outcome, treated, control, diff, low, high)
HILLSTROM_TABLE = [
    ("Mens E-Mail", "visit", 0.182757, 0.106167, 0.076590, 0.069953, 0.083226),
    ("Mens E-Mail", "conversion", 0.012531, 0.005726, 0.006805, 0.005000, 0.008610),
    ("Womens E-Mail", "visit", 0.151400, 0.106167, 0.045233, 0.038894, 0.051573),
    ("Womens E-Mail", "conversion", 0.008837, 0.005726, 0.003111, 0.001499, 0.004724),
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


def test_result_is_json_serialisable() -> None:
    result = proportion_difference(
        treated_successes=30, treated_n=100, control_successes=20, control_n=100
    )
    payload = json.loads(json.dumps(asdict(result)))
    assert payload["difference"] == pytest.approx(0.10)
    assert payload["method"] == result.method


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
