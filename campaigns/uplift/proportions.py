"""Difference in proportions of a 0/1 outcome (retained, converted, visited...), treated vs
control: Newcombe or normal intervals, a pooled z-test or Fisher's exact test, relative lift.

The `_`-prefixed cores are vectorised over numpy arrays so a simulation (or a report over many
groups) computes thousands of intervals in one call; `proportion_difference` is the scalar
wrapper. "Difference" is treated minus control; "relative lift" is treated / control - 1; every
interval is two-sided at level 1 - alpha. Pure numpy/scipy/pandas: no Django.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as sps

from campaigns.uplift.inference import (
    ArrayLikeFloat,
    FloatArray,
    as_float_array,
    check_alpha,
    critical_z,
    level_text,
)

ProportionInterval = Literal["newcombe", "normal"]

# Fisher's exact test replaces the z-test when any expected 2x2 cell count is below this:
# the usual rule of thumb (Cochran 1954) for when the chi-square/z approximation is unsafe.
MIN_EXPECTED_CELL_FOR_Z_TEST = 5.0


# --------------------------------------------------------------------------------------------
# Vectorised cores (arrays in, arrays out; callers validate)
# --------------------------------------------------------------------------------------------


def _wilson_bounds(
    successes: ArrayLikeFloat, n: ArrayLikeFloat, z: float
) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval for a single proportion, element-wise."""
    x = as_float_array(successes)
    m = as_float_array(n)
    p = x / m
    z2 = z * z
    denominator = 1.0 + z2 / m
    centre = (p + z2 / (2.0 * m)) / denominator
    half = (z / denominator) * np.sqrt(p * (1.0 - p) / m + z2 / (4.0 * m * m))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def _newcombe_bounds(
    treated_successes: ArrayLikeFloat,
    treated_n: ArrayLikeFloat,
    control_successes: ArrayLikeFloat,
    control_n: ArrayLikeFloat,
    z: float,
) -> tuple[FloatArray, FloatArray]:
    """Newcombe (1998, method 10) hybrid score interval for p_treated - p_control.

    With Wilson bounds (l1, u1) for the treated rate p1 and (l0, u0) for the control rate p0:
        low  = (p1 - p0) - sqrt((p1 - l1)^2 + (u0 - p0)^2)
        high = (p1 - p0) + sqrt((u1 - p1)^2 + (p0 - l0)^2)
    It stays inside [-1, 1], is never zero-width, and keeps close to nominal coverage for
    small counts and rates near 0, where the normal (Wald) interval under-covers.
    """
    x1 = as_float_array(treated_successes)
    n1 = as_float_array(treated_n)
    x0 = as_float_array(control_successes)
    n0 = as_float_array(control_n)
    p1, p0 = x1 / n1, x0 / n0
    l1, u1 = _wilson_bounds(x1, n1, z)
    l0, u0 = _wilson_bounds(x0, n0, z)
    difference = p1 - p0
    low = difference - np.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    high = difference + np.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return low, high


def _normal_bounds(
    treated_successes: ArrayLikeFloat,
    treated_n: ArrayLikeFloat,
    control_successes: ArrayLikeFloat,
    control_n: ArrayLikeFloat,
    z: float,
) -> tuple[FloatArray, FloatArray]:
    """Normal-approximation (Wald) interval with the unpooled, Welch-type standard error:
    (p1 - p0) +/- z * sqrt(p1 (1 - p1) / n1 + p0 (1 - p0) / n0)."""
    x1 = as_float_array(treated_successes)
    n1 = as_float_array(treated_n)
    x0 = as_float_array(control_successes)
    n0 = as_float_array(control_n)
    p1, p0 = x1 / n1, x0 / n0
    se = np.sqrt(p1 * (1.0 - p1) / n1 + p0 * (1.0 - p0) / n0)
    difference = p1 - p0
    return difference - z * se, difference + z * se


def _pooled_z_p_values(
    treated_successes: ArrayLikeFloat,
    treated_n: ArrayLikeFloat,
    control_successes: ArrayLikeFloat,
    control_n: ArrayLikeFloat,
) -> FloatArray:
    """Two-sided pooled two-proportion z-test: z = (p1 - p0) / sqrt(p (1 - p) (1/n1 + 1/n0)),
    p = pooled rate. Equal to the Pearson chi-square test without continuity correction."""
    x1 = as_float_array(treated_successes)
    n1 = as_float_array(treated_n)
    x0 = as_float_array(control_successes)
    n0 = as_float_array(control_n)
    pooled = (x1 + x0) / (n1 + n0)
    se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n0))
    difference = x1 / n1 - x0 / n0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0.0, np.abs(difference) / np.where(se > 0.0, se, 1.0), 0.0)
    return np.asarray(2.0 * sps.norm.sf(z), dtype=np.float64)


def _min_expected_cell(
    treated_successes: ArrayLikeFloat,
    treated_n: ArrayLikeFloat,
    control_successes: ArrayLikeFloat,
    control_n: ArrayLikeFloat,
) -> FloatArray:
    """Smallest expected count of the 2x2 table (arm x outcome) under independence."""
    x1 = as_float_array(treated_successes)
    n1 = as_float_array(treated_n)
    x0 = as_float_array(control_successes)
    n0 = as_float_array(control_n)
    total = n1 + n0
    successes = x1 + x0
    failures = total - successes
    return np.minimum(n1, n0) * np.minimum(successes, failures) / total


def _proportion_p_values(
    treated_successes: ArrayLikeFloat,
    treated_n: ArrayLikeFloat,
    control_successes: ArrayLikeFloat,
    control_n: ArrayLikeFloat,
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Two-sided p-values: pooled z-test, or Fisher's exact test where an expected cell < 5.

    Returns (p_values, used_fisher). Fisher runs per flagged element (scipy has no batch form);
    in practice those are rare and each is a small table.
    """
    x1 = np.atleast_1d(as_float_array(treated_successes))
    n1 = np.atleast_1d(as_float_array(treated_n))
    x0 = np.atleast_1d(as_float_array(control_successes))
    n0 = np.atleast_1d(as_float_array(control_n))
    x1, n1, x0, n0 = np.broadcast_arrays(x1, n1, x0, n0)
    p_values = _pooled_z_p_values(x1, n1, x0, n0)
    used_fisher = _min_expected_cell(x1, n1, x0, n0) < MIN_EXPECTED_CELL_FOR_Z_TEST
    for index in np.flatnonzero(used_fisher):
        table = [
            [int(x1[index]), int(n1[index] - x1[index])],
            [int(x0[index]), int(n0[index] - x0[index])],
        ]
        p_values[index] = float(sps.fisher_exact(table, alternative="two-sided").pvalue)
    return p_values, used_fisher


def _log_ratio_bounds(
    treated_successes: float, treated_n: float, control_successes: float, control_n: float, z: float
) -> tuple[float, float]:
    """Katz log risk-ratio interval for p1 / p0, returned as relative-lift bounds (ratio - 1).

    SE(log RR) = sqrt(1/x1 - 1/n1 + 1/x0 - 1/n0). A zero count gets the Haldane +0.5 correction
    (to x and n) so the bounds stay finite; callers widen them to include the point estimate.
    """
    x1, n1, x0, n0 = treated_successes, treated_n, control_successes, control_n
    if x1 == 0 or x0 == 0:
        x1, n1, x0, n0 = x1 + 0.5, n1 + 0.5, x0 + 0.5, n0 + 0.5
    log_ratio = math.log((x1 / n1) / (x0 / n0))
    se = math.sqrt(max(1.0 / x1 - 1.0 / n1 + 1.0 / x0 - 1.0 / n0, 0.0))
    return math.exp(log_ratio - z * se) - 1.0, math.exp(log_ratio + z * se) - 1.0


def _check_counts(
    *, treated_successes: int, treated_n: int, control_successes: int, control_n: int
) -> None:
    for name, successes, n in (
        ("treated", treated_successes, treated_n),
        ("control", control_successes, control_n),
    ):
        if n <= 0:
            raise ValueError(f"{name}_n must be positive, got {n}")
        if not 0 <= successes <= n:
            raise ValueError(f"{name}_successes must be in [0, {name}_n], got {successes} of {n}")


@dataclass(frozen=True)
class ProportionUplift:
    """Treated vs control rate of a 0/1 outcome (retained, converted, visited...)."""

    treated_n: int
    control_n: int
    treated_successes: int
    control_successes: int
    treated_rate: float
    control_rate: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    relative_lift: float | None
    relative_lift_ci_low: float | None
    relative_lift_ci_high: float | None
    alpha: float
    interval: str
    test: str
    method: str


def proportion_difference(
    *,
    treated_successes: int,
    treated_n: int,
    control_successes: int,
    control_n: int,
    interval: ProportionInterval = "newcombe",
    alpha: float = 0.05,
) -> ProportionUplift:
    """Difference in proportions (treated - control) with CI, p-value and relative lift.

    interval: "newcombe" (default; hybrid score interval from two Wilson intervals, good for
    small counts and rare outcomes) or "normal" (Wald, unpooled Welch-type standard error).
    p-value: pooled two-proportion z-test, or Fisher's exact test when any expected cell
    count is below 5. Relative lift interval: Katz log risk-ratio; None when the control
    rate is 0 (the ratio is undefined).
    """
    check_alpha(alpha)
    _check_counts(
        treated_successes=treated_successes,
        treated_n=treated_n,
        control_successes=control_successes,
        control_n=control_n,
    )
    if interval not in ("newcombe", "normal"):
        raise ValueError(f"interval must be 'newcombe' or 'normal', got {interval!r}")

    z = critical_z(alpha)
    bounds = _newcombe_bounds if interval == "newcombe" else _normal_bounds
    low, high = bounds(treated_successes, treated_n, control_successes, control_n, z)
    p_values, used_fisher = _proportion_p_values(
        treated_successes, treated_n, control_successes, control_n
    )
    treated_rate = treated_successes / treated_n
    control_rate = control_successes / control_n

    relative_lift: float | None = None
    lift_low: float | None = None
    lift_high: float | None = None
    if control_successes > 0:
        relative_lift = treated_rate / control_rate - 1.0
        raw_low, raw_high = _log_ratio_bounds(
            treated_successes, treated_n, control_successes, control_n, z
        )
        lift_low, lift_high = min(raw_low, relative_lift), max(raw_high, relative_lift)

    test = "fisher_exact" if bool(used_fisher[0]) else "pooled_z"
    level = level_text(alpha)
    interval_text = (
        f"Newcombe hybrid score {level} CI"
        if interval == "newcombe"
        else f"normal-approximation {level} CI (unpooled SE)"
    )
    test_text = (
        "Fisher exact test (an expected cell count < 5)"
        if test == "fisher_exact"
        else "pooled two-proportion z-test"
    )
    return ProportionUplift(
        treated_n=int(treated_n),
        control_n=int(control_n),
        treated_successes=int(treated_successes),
        control_successes=int(control_successes),
        treated_rate=float(treated_rate),
        control_rate=float(control_rate),
        difference=float(treated_rate - control_rate),
        ci_low=float(low),
        ci_high=float(high),
        p_value=float(p_values[0]),
        relative_lift=relative_lift,
        relative_lift_ci_low=lift_low,
        relative_lift_ci_high=lift_high,
        alpha=alpha,
        interval=interval,
        test=test,
        method=f"difference in proportions; {interval_text}; {test_text}",
    )


def is_binary(values: ArrayLikeFloat | pd.Series) -> bool:
    """True when every non-missing value is 0 or 1 (or a bool) and there is at least one.

    Strings count only if they are numeric ("0", "1"); "yes"/"no" is not binary here.
    """
    series = pd.Series(values) if not isinstance(values, pd.Series) else values
    series = series.dropna()
    if series.empty:
        return False
    if pd.api.types.is_bool_dtype(series):
        return True
    try:
        numeric = pd.to_numeric(series, errors="raise")
    except (TypeError, ValueError):
        return False
    return bool(numeric.isin([0, 1]).all())
