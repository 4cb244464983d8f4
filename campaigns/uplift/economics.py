"""Money from an uplift: incremental customers and revenue (the per-customer difference scaled to
the treated arm), cost, net revenue and ROI with its interval. Pure Python: no Django.
"""

from __future__ import annotations

from dataclasses import dataclass

from campaigns.uplift.means import MeanUplift
from campaigns.uplift.proportions import ProportionUplift


@dataclass(frozen=True)
class IncrementalEstimate:
    """A per-customer uplift scaled to the treated population (difference x treated_n)."""

    treated_n: int
    estimate: float
    ci_low: float
    ci_high: float


def _scaled(uplift: ProportionUplift | MeanUplift, treated_n: int) -> IncrementalEstimate:
    if treated_n < 0:
        raise ValueError(f"treated_n must be non-negative, got {treated_n}")
    return IncrementalEstimate(
        treated_n=treated_n,
        estimate=uplift.difference * treated_n,
        ci_low=uplift.ci_low * treated_n,
        ci_high=uplift.ci_high * treated_n,
    )


def incremental_customers(*, uplift: ProportionUplift, treated_n: int) -> IncrementalEstimate:
    """Customers retained (converted...) because of the campaign: rate difference x treated n."""
    return _scaled(uplift, treated_n)


def incremental_revenue(*, uplift: MeanUplift, treated_n: int) -> IncrementalEstimate:
    """Revenue caused by the campaign: mean revenue difference x treated n, with interval."""
    return _scaled(uplift, treated_n)


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
