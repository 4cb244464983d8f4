"""The one uplift breakdown: outcome cells in, one frozen GroupUplift per group out.

A cell is one row per arm x rule x tier x channel x cycle holding the sums in CELL_SUMS
(campaigns.measurement.outcomes aggregates them in SQL; `customer_cells` makes one cell per row
of a customer file, so a file and the database go through the same code). `uplift_breakdown`
sums the cells per group and arm, and `group_uplift` turns one group's two arms into rates,
differences with 95% intervals and p-values, revenue per customer (Welch), incremental
customers and revenue, cost and ROI. Pure pandas/numpy: no Django.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, cast

import numpy as np
import pandas as pd

from campaigns.uplift.economics import (
    IncrementalEstimate,
    campaign_economics,
    incremental_customers,
)
from campaigns.uplift.means import MeanUplift, mean_difference_from_summary
from campaigns.uplift.proportions import ProportionUplift, is_binary, proportion_difference

# The sums each cell carries, in the order of the cell frames.
CELL_SUMS = (
    "n",
    "retained",
    "converted_response",
    "retained_or_converted",
    "revenue",
    "revenue_sq",
    "orders",
    "contacted",
    "offer_made",
    "redeemed",
    "discount",
)
# What a breakdown adds up per group and arm: the cell sums and the messages' cost.
SUMMED = [*CELL_SUMS, "message_cost"]

GroupKey = str | int | float | None


# --- one group: two arms in, the figures out ----------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ArmSums:
    """One arm's sums over a group's cells; `converted` is the chosen conversion column."""

    n: float
    retained: float
    converted: float
    revenue: float
    revenue_sq: float
    orders: float
    contacted: float
    redeemed: float
    offer_cost: float
    message_cost: float

    @classmethod
    def of(cls, sums: pd.Series, converted_column: str) -> ArmSums:
        return cls(
            n=float(sums["n"]),
            retained=float(sums["retained"]),
            converted=float(sums[converted_column]),
            revenue=float(sums["revenue"]),
            revenue_sq=float(sums["revenue_sq"]),
            orders=float(sums["orders"]),
            contacted=float(sums["contacted"]),
            redeemed=float(sums["redeemed"]),
            # Redeemed discounts plus the cost of offers made without a coupon.
            offer_cost=float(sums["discount"] + sums["offer_made"]),
            message_cost=float(sums["message_cost"]),
        )

    def revenue_variance(self) -> float:
        """Sample variance (ddof=1) of revenue per customer, from its sum and sum of squares."""
        total, squares = self.revenue, self.revenue_sq
        return max((squares - total * total / self.n) / (self.n - 1), 0.0)


@dataclass(frozen=True, kw_only=True)
class ArmFigures:
    n: int
    retained: int
    rate: float | None
    converted: int
    conversion_rate: float | None
    revenue: float
    revenue_per_customer: float | None
    orders: int
    contacted: int
    redeemed: int

    @classmethod
    def of(cls, sums: ArmSums | None) -> ArmFigures:
        n = int(sums.n) if sums is not None else 0
        if n == 0 or sums is None:
            return cls(
                n=0,
                retained=0,
                rate=None,
                converted=0,
                conversion_rate=None,
                revenue=0.0,
                revenue_per_customer=None,
                orders=0,
                contacted=0,
                redeemed=0,
            )
        return cls(
            n=n,
            retained=int(sums.retained),
            rate=sums.retained / n,
            converted=int(sums.converted),
            conversion_rate=sums.converted / n,
            revenue=round(sums.revenue, 2),
            revenue_per_customer=sums.revenue / n,
            orders=int(sums.orders),
            contacted=int(sums.contacted),
            redeemed=int(sums.redeemed),
        )


@dataclass(frozen=True, kw_only=True)
class Estimate:
    estimate: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True, kw_only=True)
class Costs:
    offers: float
    messages: float
    total: float

    @classmethod
    def of(cls, *, offers: float, messages: float) -> Costs:
        return cls(
            offers=round(offers, 2), messages=round(messages, 2), total=round(offers + messages, 2)
        )


@dataclass(frozen=True, kw_only=True)
class GroupUplift:
    """The uplift inside one group (a rule, a tier, a channel, a cycle, or all): the statistics
    are None where an arm is too small, and `note` says why."""

    group: GroupKey
    treatment: ArmFigures
    control: ArmFigures
    retention: ProportionUplift | None = None
    conversion: ProportionUplift | None = None
    revenue: MeanUplift | None = None
    incremental_customers: IncrementalEstimate | None = None
    incremental_revenue: Estimate | None = None
    cost: Costs
    roi: float | None = None
    roi_ci_low: float | None = None
    roi_ci_high: float | None = None
    note: str | None = None
    net_incremental_revenue: float | None = None
    cost_per_incremental_customer: float | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if self.revenue is None:  # the stored shape has these two only beside a revenue uplift
            del data["net_incremental_revenue"], data["cost_per_incremental_customer"]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GroupUplift:
        def optional(kind: Any, key: str) -> Any:
            return None if data[key] is None else kind(**data[key])

        return cls(
            group=data["group"],
            treatment=ArmFigures(**data["treatment"]),
            control=ArmFigures(**data["control"]),
            retention=optional(ProportionUplift, "retention"),
            conversion=optional(ProportionUplift, "conversion"),
            revenue=optional(MeanUplift, "revenue"),
            incremental_customers=optional(IncrementalEstimate, "incremental_customers"),
            incremental_revenue=optional(Estimate, "incremental_revenue"),
            cost=Costs(**data["cost"]),
            roi=data["roi"],
            roi_ci_low=data["roi_ci_low"],
            roi_ci_high=data["roi_ci_high"],
            note=data["note"],
            net_incremental_revenue=data.get("net_incremental_revenue"),
            cost_per_incremental_customer=data.get("cost_per_incremental_customer"),
        )


def group_uplift(*, label: GroupKey, arms: Mapping[str, ArmSums]) -> GroupUplift:
    """The figures of one group from its arms' sums ("treatment", "control"; either may be
    missing): counts first, then the rate statistics, then revenue and money when each arm
    has at least two customers (a variance needs two)."""
    treated, control = arms.get("treatment"), arms.get("control")
    offer_cost = sum(arm.offer_cost for arm in arms.values())
    message_cost = sum(arm.message_cost for arm in arms.values())
    group = GroupUplift(
        group=label,
        treatment=ArmFigures.of(treated),
        control=ArmFigures.of(control),
        cost=Costs.of(offers=offer_cost, messages=message_cost),
    )
    t, c = group.treatment, group.control
    if treated is None or control is None or t.n == 0 or c.n == 0:
        return replace(group, note="no control customers" if t.n else "no treated customers")
    group = _with_rates(group)
    if min(t.n, c.n) < 2:
        return replace(group, note="revenue needs at least 2 customers per arm")
    return _with_revenue(
        group,
        treated=treated,
        control=control,
        offer_cost=offer_cost,
        message_cost=message_cost,
    )


def _with_rates(group: GroupUplift) -> GroupUplift:
    """Retention and conversion differences, and the customers retained because of it."""
    t, c = group.treatment, group.control
    retention = proportion_difference(
        treated_successes=t.retained,
        treated_n=t.n,
        control_successes=c.retained,
        control_n=c.n,
    )
    conversion = proportion_difference(
        treated_successes=t.converted,
        treated_n=t.n,
        control_successes=c.converted,
        control_n=c.n,
    )
    return replace(
        group,
        retention=retention,
        conversion=conversion,
        incremental_customers=incremental_customers(uplift=retention, treated_n=t.n),
    )


def _with_revenue(
    group: GroupUplift,
    *,
    treated: ArmSums,
    control: ArmSums,
    offer_cost: float,
    message_cost: float,
) -> GroupUplift:
    """Revenue per customer (Welch), incremental revenue, cost and ROI."""
    t, c = group.treatment, group.control
    revenue = mean_difference_from_summary(
        treated_mean=cast(float, t.revenue_per_customer),
        treated_var=treated.revenue_variance(),
        treated_n=t.n,
        control_mean=cast(float, c.revenue_per_customer),
        control_var=control.revenue_variance(),
        control_n=c.n,
    )
    economics = campaign_economics(
        revenue_uplift=revenue,
        treated_n=t.n,
        offer_cost_total=offer_cost,
        message_cost_total=message_cost,
        retention_uplift=group.retention,
    )
    return replace(
        group,
        revenue=revenue,
        incremental_revenue=Estimate(
            estimate=economics.incremental_revenue,
            ci_low=economics.incremental_revenue_ci_low,
            ci_high=economics.incremental_revenue_ci_high,
        ),
        roi=economics.roi,
        roi_ci_low=economics.roi_ci_low,
        roi_ci_high=economics.roi_ci_high,
        net_incremental_revenue=economics.net_incremental_revenue,
        cost_per_incremental_customer=economics.cost_per_incremental_customer,
    )


# --- the breakdown ------------------------------------------------------------------------------


def _python_scalar(value: Hashable) -> GroupKey:
    """Group keys as JSON-safe Python values; every kind of missing becomes None."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return cast(GroupKey, value)


def _arms_by_group(
    cells: pd.DataFrame, by: str, converted_column: str
) -> dict[GroupKey, dict[str, ArmSums]]:
    sums = cells.groupby([by, "arm"], dropna=False)[SUMMED].sum()
    groups: dict[GroupKey, dict[str, ArmSums]] = {}
    for key, row in sums.iterrows():
        value, arm = cast(tuple[Hashable, Hashable], key)
        groups.setdefault(_python_scalar(value), {})[str(arm)] = ArmSums.of(row, converted_column)
    return groups


def uplift_breakdown(
    *,
    cells: pd.DataFrame,
    by: str,
    labels: Mapping[Any, str] | None = None,
    converted_column: str = "retained",
) -> tuple[GroupUplift, ...]:
    """One GroupUplift per value of the `by` column, in sorted order; cells whose value is
    missing form a last group of their own (group=None) rather than vanishing. `labels` names
    the values (rule id → "1. Critical"); the value itself is the label otherwise."""
    groups = _arms_by_group(cells, by, converted_column)
    values: list[GroupKey] = sorted(
        (value for value in groups if value is not None), key=lambda v: (str(type(v)), v)
    )
    if None in groups:
        values.append(None)
    names = labels or {}
    return tuple(
        group_uplift(label=names.get(value, value), arms=groups[value]) for value in values
    )


def customer_cells(
    frame: pd.DataFrame,
    *,
    group_column: str,
    arm_column: str = "arm",
    outcome_column: str = "outcome",
    revenue_column: str | None = "revenue",
    treatment_value: Hashable = "treatment",
    control_value: Hashable = "control",
) -> pd.DataFrame:
    """A file of one row per customer as cells of one customer each, so it goes through the
    same breakdown as the database. Refuses missing columns, arm values other than the two
    named, and an outcome that is not 0/1. Without a revenue column revenue is 0."""
    required = [group_column, arm_column, outcome_column]
    required += [revenue_column] if revenue_column else []
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
    revenue = np.zeros(len(frame))
    if revenue_column:
        values = pd.to_numeric(frame[revenue_column], errors="raise")
        if values.isna().any():
            raise ValueError(f"revenue column {revenue_column!r} has missing values")
        revenue = values.to_numpy(dtype=np.float64)
    outcome = frame[outcome_column].to_numpy(dtype=np.float64)
    cells = pd.DataFrame(
        {
            group_column: frame[group_column].to_numpy(),
            "arm": np.where(arms == treatment_value, "treatment", "control"),
            **dict.fromkeys(SUMMED, 0.0),
        }
    )
    cells["n"] = 1.0
    cells["retained"] = cells["retained_or_converted"] = outcome
    cells["revenue"], cells["revenue_sq"] = revenue, revenue * revenue
    return cells
