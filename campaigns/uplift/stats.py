"""Uplift of a randomised campaign: treated vs control, with intervals, p-values and money.

Everything here takes counts, arrays or a DataFrame and returns frozen dataclasses; no Django.
The `_`-prefixed cores are vectorised over numpy arrays so a simulation (or a report over many
groups) computes thousands of intervals in one call; the public functions are scalar wrappers.

Conventions: "difference" is treated minus control (absolute, in outcome units); "relative lift"
is treated / control - 1; every interval is two-sided at level 1 - alpha.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as sps

ProportionInterval = Literal["newcombe", "normal"]
MeanInterval = Literal["welch_t", "normal"]
FloatArray = npt.NDArray[np.float64]
ArrayLikeFloat = npt.ArrayLike

# Fisher's exact test replaces the z-test when any expected 2x2 cell count is below this:
# the usual rule of thumb (Cochran 1954) for when the chi-square/z approximation is unsafe.
MIN_EXPECTED_CELL_FOR_Z_TEST = 5.0


def _critical_z(alpha: float) -> float:
    return float(sps.norm.ppf(1.0 - alpha / 2.0))


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _as_float_array(values: ArrayLikeFloat) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Vectorised cores (arrays in, arrays out; callers validate)
# --------------------------------------------------------------------------------------------


def _wilson_bounds(
    successes: ArrayLikeFloat, n: ArrayLikeFloat, z: float
) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval for a single proportion, element-wise."""
    x = _as_float_array(successes)
    m = _as_float_array(n)
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
    x1 = _as_float_array(treated_successes)
    n1 = _as_float_array(treated_n)
    x0 = _as_float_array(control_successes)
    n0 = _as_float_array(control_n)
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
    x1 = _as_float_array(treated_successes)
    n1 = _as_float_array(treated_n)
    x0 = _as_float_array(control_successes)
    n0 = _as_float_array(control_n)
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
    x1 = _as_float_array(treated_successes)
    n1 = _as_float_array(treated_n)
    x0 = _as_float_array(control_successes)
    n0 = _as_float_array(control_n)
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
    x1 = _as_float_array(treated_successes)
    n1 = _as_float_array(treated_n)
    x0 = _as_float_array(control_successes)
    n0 = _as_float_array(control_n)
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
    x1 = np.atleast_1d(_as_float_array(treated_successes))
    n1 = np.atleast_1d(_as_float_array(treated_n))
    x0 = np.atleast_1d(_as_float_array(control_successes))
    n0 = np.atleast_1d(_as_float_array(control_n))
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


# --------------------------------------------------------------------------------------------
# Difference in proportions
# --------------------------------------------------------------------------------------------


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    _check_alpha(alpha)
    for name, successes, n in (
        ("treated", treated_successes, treated_n),
        ("control", control_successes, control_n),
    ):
        if n <= 0:
            raise ValueError(f"{name}_n must be positive, got {n}")
        if not 0 <= successes <= n:
            raise ValueError(f"{name}_successes must be in [0, {name}_n], got {successes} of {n}")
    if interval not in ("newcombe", "normal"):
        raise ValueError(f"interval must be 'newcombe' or 'normal', got {interval!r}")

    z = _critical_z(alpha)
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
    level = f"{100 * (1 - alpha):g}%"
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


# --------------------------------------------------------------------------------------------
# Difference in means (revenue, spend, order count...)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeanUplift:
    """Treated vs control mean of a continuous outcome (revenue per customer, spend...)."""

    treated_n: int
    control_n: int
    treated_mean: float
    control_mean: float
    treated_std: float
    control_std: float
    difference: float
    standard_error: float
    ci_low: float
    ci_high: float
    p_value: float
    degrees_of_freedom: float | None
    relative_lift: float | None
    relative_lift_ci_low: float | None
    relative_lift_ci_high: float | None
    alpha: float
    interval: str
    method: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mean_difference_from_summary(
    *,
    treated_mean: float,
    treated_var: float,
    treated_n: int,
    control_mean: float,
    control_var: float,
    control_n: int,
    interval: MeanInterval = "welch_t",
    alpha: float = 0.05,
) -> MeanUplift:
    """Welch difference in means from per-arm mean, sample variance (ddof=1) and size.

    SE = sqrt(s1^2/n1 + s0^2/n0) (unequal variances). interval:
    - "welch_t" (default): t quantile with Welch-Satterthwaite degrees of freedom
      df = SE^4 / ((s1^2/n1)^2/(n1-1) + (s0^2/n0)^2/(n0-1)); p-value from the same t;
      identical to scipy.stats.ttest_ind(equal_var=False). Safer for small arms.
    - "normal": standard normal quantile and p-value; what large-sample reports (and the
      Hillstrom reference table) use. For arms of thousands the two agree to ~4 decimals.
    Relative lift = treated_mean / control_mean - 1 (None if the control mean is 0); its
    interval is a delta-method interval on the log ratio of means, only when both means > 0.
    """
    _check_alpha(alpha)
    if interval not in ("welch_t", "normal"):
        raise ValueError(f"interval must be 'welch_t' or 'normal', got {interval!r}")
    for name, n, var in (("treated", treated_n, treated_var), ("control", control_n, control_var)):
        if n < 2:
            raise ValueError(f"{name} arm needs at least 2 values for a variance, got {n}")
        if not math.isfinite(var) or var < 0:
            raise ValueError(f"{name} variance must be finite and non-negative, got {var}")

    treated_term = treated_var / treated_n
    control_term = control_var / control_n
    se = math.sqrt(treated_term + control_term)
    difference = treated_mean - control_mean

    df: float | None = None
    if interval == "welch_t" and se > 0:
        df = (treated_term + control_term) ** 2 / (
            treated_term**2 / (treated_n - 1) + control_term**2 / (control_n - 1)
        )
        critical = float(sps.t.ppf(1.0 - alpha / 2.0, df))
    else:
        critical = _critical_z(alpha)

    if se > 0:
        statistic = abs(difference) / se
        if df is not None:
            p_value = float(2.0 * sps.t.sf(statistic, df))
        else:
            p_value = float(2.0 * sps.norm.sf(statistic))
    else:
        # Both arms constant: the difference is known exactly.
        p_value = 1.0 if difference == 0 else 0.0

    relative_lift: float | None = None
    lift_low: float | None = None
    lift_high: float | None = None
    if control_mean != 0:
        relative_lift = treated_mean / control_mean - 1.0
        if treated_mean > 0 and control_mean > 0:
            z = _critical_z(alpha)
            log_se = math.sqrt(
                treated_var / (treated_n * treated_mean**2)
                + control_var / (control_n * control_mean**2)
            )
            log_ratio = math.log(treated_mean / control_mean)
            lift_low = math.exp(log_ratio - z * log_se) - 1.0
            lift_high = math.exp(log_ratio + z * log_se) - 1.0

    level = f"{100 * (1 - alpha):g}%"
    interval_text = (
        f"Welch-Satterthwaite t {level} CI and t-test"
        if interval == "welch_t"
        else f"normal-approximation {level} CI and z-test (Welch SE)"
    )
    return MeanUplift(
        treated_n=int(treated_n),
        control_n=int(control_n),
        treated_mean=float(treated_mean),
        control_mean=float(control_mean),
        treated_std=math.sqrt(treated_var),
        control_std=math.sqrt(control_var),
        difference=float(difference),
        standard_error=se,
        ci_low=float(difference - critical * se),
        ci_high=float(difference + critical * se),
        p_value=p_value,
        degrees_of_freedom=None if df is None else float(df),
        relative_lift=relative_lift,
        relative_lift_ci_low=lift_low,
        relative_lift_ci_high=lift_high,
        alpha=alpha,
        interval=interval,
        method=f"Welch difference in means; {interval_text}",
    )


def mean_difference(
    *,
    treated: ArrayLikeFloat,
    control: ArrayLikeFloat,
    interval: MeanInterval = "welch_t",
    alpha: float = 0.05,
) -> MeanUplift:
    """Welch difference in means of two samples; see `mean_difference_from_summary`.

    Default interval is "welch_t"; pass interval="normal" for the large-sample z version.
    Missing values are not silently dropped: a NaN or infinity raises ValueError (decide
    upstream whether a missing revenue means 0).
    """
    treated_values = _as_float_array(treated).ravel()
    control_values = _as_float_array(control).ravel()
    for name, values in (("treated", treated_values), ("control", control_values)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} values contain NaN or infinity")
        if values.size < 2:
            raise ValueError(f"{name} arm needs at least 2 values, got {values.size}")
    return mean_difference_from_summary(
        treated_mean=float(treated_values.mean()),
        treated_var=float(treated_values.var(ddof=1)),
        treated_n=int(treated_values.size),
        control_mean=float(control_values.mean()),
        control_var=float(control_values.var(ddof=1)),
        control_n=int(control_values.size),
        interval=interval,
        alpha=alpha,
    )


# --------------------------------------------------------------------------------------------
# Money: incremental customers and revenue, cost, ROI
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncrementalEstimate:
    """A per-customer uplift scaled to the treated population (difference x treated_n)."""

    treated_n: int
    estimate: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def incremental_customers(*, uplift: ProportionUplift, treated_n: int) -> IncrementalEstimate:
    """Customers retained (converted...) because of the campaign: rate difference x treated n."""
    if treated_n < 0:
        raise ValueError(f"treated_n must be non-negative, got {treated_n}")
    return IncrementalEstimate(
        treated_n=treated_n,
        estimate=uplift.difference * treated_n,
        ci_low=uplift.ci_low * treated_n,
        ci_high=uplift.ci_high * treated_n,
    )


def incremental_revenue(*, uplift: MeanUplift, treated_n: int) -> IncrementalEstimate:
    """Revenue caused by the campaign: mean revenue difference x treated n, with interval."""
    if treated_n < 0:
        raise ValueError(f"treated_n must be non-negative, got {treated_n}")
    return IncrementalEstimate(
        treated_n=treated_n,
        estimate=uplift.difference * treated_n,
        ci_low=uplift.ci_low * treated_n,
        ci_high=uplift.ci_high * treated_n,
    )


@dataclass(frozen=True)
class Economics:
    """What the campaign earned and cost. Costs are taken as known (no sampling error)."""

    treated_n: int
    incremental_revenue: float
    incremental_revenue_ci_low: float
    incremental_revenue_ci_high: float
    incremental_customers: float | None
    incremental_customers_ci_low: float | None
    incremental_customers_ci_high: float | None
    offer_cost_total: float
    message_cost_total: float
    total_cost: float
    net_incremental_revenue: float
    roi: float | None
    roi_ci_low: float | None
    roi_ci_high: float | None
    cost_per_incremental_customer: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def campaign_economics(
    *,
    revenue_uplift: MeanUplift,
    treated_n: int,
    offer_cost_total: float,
    message_cost_total: float,
    retention_uplift: ProportionUplift | None = None,
) -> Economics:
    """Incremental revenue, cost and ROI = (incremental revenue - cost) / cost.

    The ROI interval maps the incremental-revenue interval through the same formula (ROI is
    increasing in revenue for a fixed positive cost). ROI is None when the cost is 0.
    Pass margin instead of revenue in `revenue_uplift` for a profit-based ROI.
    `cost_per_incremental_customer` needs `retention_uplift` and a positive incremental count.
    """
    if offer_cost_total < 0 or message_cost_total < 0:
        raise ValueError("costs must be non-negative")
    revenue = incremental_revenue(uplift=revenue_uplift, treated_n=treated_n)
    total_cost = float(offer_cost_total + message_cost_total)

    roi: float | None = None
    roi_low: float | None = None
    roi_high: float | None = None
    if total_cost > 0:
        roi = (revenue.estimate - total_cost) / total_cost
        roi_low = (revenue.ci_low - total_cost) / total_cost
        roi_high = (revenue.ci_high - total_cost) / total_cost

    customers: IncrementalEstimate | None = None
    cost_per_customer: float | None = None
    if retention_uplift is not None:
        customers = incremental_customers(uplift=retention_uplift, treated_n=treated_n)
        if customers.estimate > 0:
            cost_per_customer = total_cost / customers.estimate

    return Economics(
        treated_n=treated_n,
        incremental_revenue=revenue.estimate,
        incremental_revenue_ci_low=revenue.ci_low,
        incremental_revenue_ci_high=revenue.ci_high,
        incremental_customers=None if customers is None else customers.estimate,
        incremental_customers_ci_low=None if customers is None else customers.ci_low,
        incremental_customers_ci_high=None if customers is None else customers.ci_high,
        offer_cost_total=float(offer_cost_total),
        message_cost_total=float(message_cost_total),
        total_cost=total_cost,
        net_incremental_revenue=revenue.estimate - total_cost,
        roi=roi,
        roi_ci_low=roi_low,
        roi_ci_high=roi_high,
        cost_per_incremental_customer=cost_per_customer,
    )


# --------------------------------------------------------------------------------------------
# Breakdown by rule / tier / channel
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupUplift:
    """Uplift inside one group; statistics are None when an arm is empty (with a note)."""

    group: Any
    treated_n: int
    control_n: int
    retention: ProportionUplift | None
    revenue: MeanUplift | None
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UpliftBreakdown:
    by: str
    groups: tuple[GroupUplift, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _python_scalar(value: Hashable) -> Any:
    """Group keys as JSON-safe Python values; every kind of missing becomes None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def uplift_breakdown(
    *,
    frame: pd.DataFrame,
    by: str,
    arm_column: str = "arm",
    outcome_column: str = "outcome",
    revenue_column: str | None = "revenue",
    treatment_value: Hashable = "treatment",
    control_value: Hashable = "control",
    interval: ProportionInterval = "newcombe",
    revenue_interval: MeanInterval = "welch_t",
    alpha: float = 0.05,
) -> UpliftBreakdown:
    """Per-group uplift (rule, tier, channel...) from one row per customer.

    Counts, means and variances come from one vectorised groupby; the statistics are then
    applied per group (groups are few). Rows whose group value is missing form a group of
    their own (group=None) rather than vanishing. Arm values other than the two named raise.
    """
    required = [by, arm_column, outcome_column] + ([revenue_column] if revenue_column else [])
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; available: {list(frame.columns)}")
    arms = frame[arm_column]
    unexpected = sorted(
        {str(v) for v in arms.dropna().unique()} - {str(treatment_value), str(control_value)}
    )
    if unexpected or arms.isna().any():
        raise ValueError(
            f"arm column {arm_column!r} has values other than {treatment_value!r}/"
            f"{control_value!r}: {unexpected or ['<missing>']}"
        )
    if not is_binary(frame[outcome_column]) or frame[outcome_column].isna().any():
        raise ValueError(f"outcome column {outcome_column!r} must be 0/1 with no missing values")

    work = pd.DataFrame(
        {
            "group": frame[by],
            "treated": (arms == treatment_value).to_numpy(),
            "outcome": frame[outcome_column].astype(np.float64).to_numpy(),
        }
    )
    aggregations: dict[str, tuple[str, str]] = {
        "n": ("outcome", "size"),
        "successes": ("outcome", "sum"),
    }
    if revenue_column:
        revenue = pd.to_numeric(frame[revenue_column], errors="raise")
        if revenue.isna().any():
            raise ValueError(f"revenue column {revenue_column!r} has missing values")
        work["revenue"] = revenue.astype(np.float64).to_numpy()
        aggregations["revenue_mean"] = ("revenue", "mean")
        aggregations["revenue_var"] = ("revenue", "var")
    summary = work.groupby(["group", "treated"], dropna=False, sort=True).agg(**aggregations)
    # One row per group, one column per (statistic, arm); an empty arm becomes NaN -> 0 rows.
    wide = cast(pd.DataFrame, summary.unstack("treated")).reindex(
        columns=pd.MultiIndex.from_product([list(aggregations), [True, False]])
    )

    def column(statistic: str, treated: bool) -> FloatArray:
        return wide[(statistic, treated)].to_numpy(dtype=np.float64, na_value=0.0)

    treated_ns, control_ns = column("n", True).astype(np.int64), column("n", False).astype(np.int64)
    treated_hits, control_hits = column("successes", True), column("successes", False)

    groups: list[GroupUplift] = []
    for position, group_value in enumerate(wide.index):
        treated_n, control_n = int(treated_ns[position]), int(control_ns[position])
        retention: ProportionUplift | None = None
        revenue_uplift: MeanUplift | None = None
        note: str | None = None
        if treated_n == 0 or control_n == 0:
            note = "no treated customers" if treated_n == 0 else "no control customers"
        else:
            retention = proportion_difference(
                treated_successes=int(treated_hits[position]),
                treated_n=treated_n,
                control_successes=int(control_hits[position]),
                control_n=control_n,
                interval=interval,
                alpha=alpha,
            )
            if revenue_column and min(treated_n, control_n) < 2:
                note = "revenue needs at least 2 customers per arm"
            elif revenue_column:
                revenue_uplift = mean_difference_from_summary(
                    treated_mean=float(column("revenue_mean", True)[position]),
                    treated_var=float(column("revenue_var", True)[position]),
                    treated_n=treated_n,
                    control_mean=float(column("revenue_mean", False)[position]),
                    control_var=float(column("revenue_var", False)[position]),
                    control_n=control_n,
                    interval=revenue_interval,
                    alpha=alpha,
                )
        groups.append(
            GroupUplift(
                group=_python_scalar(group_value),
                treated_n=treated_n,
                control_n=control_n,
                retention=retention,
                revenue=revenue_uplift,
                note=note,
            )
        )
    return UpliftBreakdown(by=by, groups=tuple(groups))


# --------------------------------------------------------------------------------------------
# Outcome type detection
# --------------------------------------------------------------------------------------------


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
