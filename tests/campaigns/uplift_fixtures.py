"""A campaign with finished, randomised cycles whose outcomes carry a known uplift: the rows
uplift models train on (tests/campaigns/test_uplift_targeting*.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np

from campaigns.models import Campaign, Intervention
from campaigns.services.dispatch import campaign_dispatch
from customers.models import Customer, Order
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer, make_template

HISTORY_DAYS = 200


def uplift_settings(settings: Any, tmp_path: Any) -> None:
    """Settings every uplift-targeting test runs with: model files in `tmp_path`, no quiet
    hours, SMS consent by default, and few bootstrap resamples (intervals are not what these
    tests check)."""
    settings.MODEL_ARTIFACT_DIR = tmp_path / "models"
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.UPLIFT_BOOTSTRAP_RESAMPLES = 20
    settings.CONSENT_DEFAULTS = {**settings.CONSENT_DEFAULTS, "sms": True}


def customers_with_history(count: int, *, start: int = 0, seed: int = 7) -> list[Customer]:
    """`count` customers (half critical, half high risk) with 1-6 completed orders over the
    200 days before NOON; `attributes["heavy"]` marks the ones with larger baskets."""
    rng = np.random.default_rng(seed)
    customers = make_customers(count, start=start)
    orders, critical = [], []
    for index, customer in enumerate(customers):
        heavy = index % 2 == 0
        if index % 4 >= 2:
            customer.risk_tier, customer.churn_probability = "high", 0.6
        else:
            critical.append(customer.pk)
        customer.attributes = {"heavy": heavy}
        for n in range(int(rng.integers(1, 7))):
            orders.append(
                Order(
                    external_id=f"h{customer.pk}-{n}",
                    customer=customer,
                    placed_at=NOON - timedelta(days=float(rng.uniform(1, HISTORY_DAYS))),
                    amount=Decimal(
                        str(round(float(rng.uniform(80, 160) if heavy else rng.uniform(10, 40)), 2))
                    ),
                    status="completed",
                )
            )
    Customer.objects.bulk_update(customers, ["risk_tier", "churn_probability", "attributes"])
    Order.objects.bulk_create(orders, batch_size=2000)
    return customers


def two_action_campaign(**fields: Any) -> Campaign:
    """Two rules: critical customers by email (offer 5), high ones by SMS (offer 2)."""
    values: dict[str, Any] = {"control_percentage": Decimal("40"), "cooldown_days": 0}
    values.update(fields)
    return make_campaign(
        rules=[
            {"name": "critical by email", "tiers": ["critical"], "channel": "email",
             "offer": make_offer(), "template": make_template("email")},
            {"name": "high by SMS", "tiers": ["high"], "channel": "sms",
             "offer": make_offer(name="5 off", kind="fixed_coupon", value=Decimal("5"),
                                 unit_cost=Decimal("2")),
             "template": make_template("sms", body="Hi {{ first_name }}: {{ coupon_code }}")},
        ],
        **values,
    )  # fmt: skip


def outcomes_write(campaign: Campaign, *, seed: int = 11) -> None:
    """Orders inside every intervention's window: control retained 30%; treated "heavy"
    customers 75%, the others 30% (the offer only changes the heavy ones)."""
    rng = np.random.default_rng(seed)
    orders = []
    for intervention in Intervention.objects.filter(campaign=campaign).select_related("customer"):
        heavy = bool(intervention.customer.attributes.get("heavy"))
        treated = intervention.arm == "treatment"
        p = 0.75 if (treated and heavy) else 0.3
        if rng.random() < p:
            orders.append(
                Order(
                    external_id=f"o{intervention.pk}",
                    customer_id=intervention.customer_id,
                    placed_at=intervention.created_at + timedelta(days=float(rng.uniform(1, 25))),
                    amount=Decimal("50"),
                    status="completed",
                )
            )
    Order.objects.bulk_create(orders, batch_size=2000)


def finished_cycles(campaign: Campaign, *, cycles: int = 1, seed: int = 11) -> datetime:
    """Dispatch `cycles` cycles a week apart from NOON, write their outcomes, and return a
    time after every attribution window ended."""
    when = NOON
    for n in range(cycles):
        campaign_dispatch(campaign=campaign, now=when)
        when = NOON + timedelta(days=7 * (n + 1))
    outcomes_write(campaign, seed=seed)
    return NOON + timedelta(days=7 * cycles + campaign.attribution_window_days + 1)
