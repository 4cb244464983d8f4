"""Money from an uplift: incremental customers and revenue, cost and ROI with its interval."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from campaigns.uplift.economics import (
    campaign_economics,
    incremental_customers,
    incremental_revenue,
)
from campaigns.uplift.means import mean_difference
from campaigns.uplift.proportions import proportion_difference


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
    json.dumps(asdict(economics))


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
