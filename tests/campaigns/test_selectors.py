"""Reused reads of campaigns: the rules prefilter against the rules themselves, candidate frames
and chunks, customer value, contact history, usage, due campaigns and the audience estimate."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

from campaigns import selectors
from campaigns.models import CampaignStatus, Intervention, Rule
from campaigns.rules import RuleSpec, first_matching_rule, rule_spec
from campaigns.services.dispatch import campaign_dispatch
from campaigns.suppression import consent_columns
from customers.models import Consent, Customer, Order, OrderStatus
from tests.campaigns.conftest import NOON, make_campaign, make_customers

pytestmark = pytest.mark.django_db

TIERS = ["low", "medium", "high", "critical"]
PROBABILITIES = np.round(np.linspace(0, 1, 11), 2)  # a coarse grid, so bounds hit exactly
ATTRIBUTES: dict[str, list[Any]] = {
    "Contract": ["Month-to-month", " month-to-month", "One year", "Two year"],
    "tenure": [1, 5, 12, 24, "12", "abc"],
    "vip": [True, False, 1, 0, "yes"],
}
VALUES = [None, 0.0, 50.0, 100.0, 500.0]
OPERATORS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "contains"]
NUMBERS: list[Any] = [1, 5, 12, 24, "12", 0.5]


def generated_customers(rng: np.random.Generator, n: int) -> None:
    """Scored and unscored customers with random tiers, probabilities, attributes (some
    missing), completed-order values and SMS consents."""
    rows = []
    for i in range(n):
        scored = rng.random() > 0.1
        attributes = {
            k: v[rng.integers(len(v))] for k, v in ATTRIBUTES.items() if rng.random() > 0.2
        }
        rows.append(
            Customer(
                external_id=f"g{i:05d}",
                email=f"g{i}@example.com",
                churn_probability=float(rng.choice(PROBABILITIES)) if scored else None,
                risk_tier=str(rng.choice(TIERS)) if scored else "",
                attributes=attributes,
            )
        )
    customers = Customer.objects.bulk_create(rows)
    values = [VALUES[rng.integers(len(VALUES))] for _ in customers]
    Order.objects.bulk_create(
        [
            Order(
                external_id=f"go{c.pk}",
                customer=c,
                placed_at=NOON - timedelta(days=10),
                amount=Decimal(str(v)),
            )
            for c, v in zip(customers, values, strict=True)
            if v is not None
        ]
    )
    Consent.objects.bulk_create(
        [
            Consent(customer=c, channel="sms", status="granted", recorded_at=NOON, source="t")
            for c in customers
            if rng.random() > 0.5
        ]
    )


def generated_rule(rng: np.random.Generator) -> Rule:
    """An unsaved rule with random conditions of every kind (some contradictory)."""

    def maybe(options: Any) -> Any:
        return None if rng.random() < 0.5 else options[rng.integers(len(options))]

    conditions = []
    for _ in range(rng.integers(0, 3)):
        field = str(rng.choice(list(ATTRIBUTES)))
        operator = str(rng.choice(OPERATORS))
        # A comparison needs a number (a rule comparing with "abc" fails, as it always has).
        options = NUMBERS if operator in ("gt", "gte", "lt", "lte") else ATTRIBUTES[field]
        value = options[rng.integers(len(options))]
        conditions.append({"field": field, "operator": operator, "value": value})
    tiers = [str(t) for t in rng.choice([*TIERS, "vip"], size=rng.integers(0, 3), replace=False)]
    bound = maybe([Decimal("0"), Decimal("50"), Decimal("100"), Decimal("500")])
    return Rule(
        name="generated",
        channel="coupon",
        tiers=tiers,
        min_probability=maybe([float(p) for p in PROBABILITIES]),
        max_probability=maybe([float(p) for p in PROBABILITIES]),
        min_value=bound,
        max_value=maybe([Decimal("50"), Decimal("500")]),
        attribute_conditions=conditions,
        consent_channel=str(rng.choice(["", "", "sms", "email"])),
    )


def frame_as_the_dispatch_reads_it() -> pd.DataFrame:
    """Every scored customer with every column a rule may read (as the plan builds it)."""
    reads_all = [{"field": f, "operator": "eq", "value": 0} for f in ATTRIBUTES]
    everything = rule_spec(Rule(attribute_conditions=reads_all))
    id_range = (0, 10**9)
    frame = selectors.candidates_frame(specs=[everything], id_range=id_range)
    values = selectors.customer_value_frame(id_range=id_range, now=NOON)
    frame["value"] = frame["customer_id"].map(values).fillna(0.0)
    consent = consent_columns(
        customer_ids=frame["customer_id"],
        consents=selectors.consents_frame(id_range=id_range),
        defaults={"email": True},
    )
    return frame.join(consent, on="customer_id")


def test_every_customer_the_rules_match_passes_the_sql_prefilter() -> None:
    """The prefilter is a superset by design: it checks only the tier and probability
    conditions (and that a score exists); on those it is exact."""
    rng = np.random.default_rng(20261124)
    generated_customers(rng, 400)
    frame = frame_as_the_dispatch_reads_it()
    scored = set(
        Customer.objects.filter(churn_probability__isnull=False).values_list("pk", flat=True)
    )
    assert set(frame["customer_id"]) == scored
    strictly_more = 0
    for _trial in range(80):
        specs = [rule_spec(generated_rule(rng)) for _ in range(rng.integers(1, 4))]
        matched = set(frame.loc[first_matching_rule(frame, specs) >= 0, "customer_id"])
        prefiltered = set(
            Customer.objects.filter(selectors.rules_prefilter(specs)).values_list("pk", flat=True)
        )
        assert matched <= prefiltered <= scored
        on_scores = [
            RuleSpec(tuple(c for c in s.conditions if c.column in selectors.SCORE_FIELDS))
            for s in specs
        ]
        assert set(frame.loc[first_matching_rule(frame, on_scores) >= 0, "customer_id"]) == (
            prefiltered
        )
        strictly_more += prefiltered != matched
    assert strictly_more > 10  # value, attribute and consent conditions are not in the SQL


def test_candidate_chunks_cover_the_prefiltered_customers_in_id_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_customers(7)
    make_customers(3, start=100, risk_tier="low")
    make_customers(2, start=200, churn_probability=None)
    monkeypatch.setattr(selectors, "CANDIDATE_CHUNK", 3)
    specs = [rule_spec(Rule(tiers=["critical"]))]
    ranges = list(selectors.candidate_id_ranges(specs=specs))
    ids = list(
        Customer.objects.filter(risk_tier="critical").order_by("pk").values_list("pk", flat=True)
    )
    assert ranges == [(ids[0], ids[2]), (ids[3], ids[5]), (ids[6], ids[6])]


def test_the_candidates_frame_holds_what_rules_and_policy_read() -> None:
    first, second = make_customers(2, attributes={"Contract": "One year"})
    Customer.objects.filter(pk=second.pk).update(email="", phone="", erased=True, attributes={})
    specs = [
        rule_spec(
            Rule(attribute_conditions=[{"field": "Contract", "operator": "eq", "value": "x"}])
        )
    ]
    frame = selectors.candidates_frame(specs=specs, id_range=(first.pk, second.pk))
    assert list(frame.columns) == [
        "customer_id",
        "probability",
        "tier",
        "model_version",
        "time_zone",
        "erased",
        "attr__Contract",
        "has_device",
        "has_email",
        "has_phone",
        "segment",
    ]
    assert frame["customer_id"].tolist() == [first.pk, second.pk]
    assert frame["attr__Contract"].iloc[0] == "One year" and pd.isna(
        frame["attr__Contract"].iloc[1]
    )
    assert frame["has_email"].tolist() == [True, False] and frame["has_phone"].tolist() == [
        True,
        False,
    ]
    assert frame["erased"].tolist() == [False, True] and frame["probability"].dtype == float
    assert frame["segment"].tolist() == ["", ""]  # scored by m1, which has no student leaf
    Customer.objects.filter(pk=first.pk).update(score_student_leaf=7)
    again = selectors.candidates_frame(specs=specs, id_range=(first.pk, second.pk))
    assert again["segment"].tolist() == ["m1#7", ""]
    assert selectors.candidates_frame(specs=specs, id_range=(second.pk + 1, second.pk + 9)).empty


def test_customer_value_is_completed_revenue_of_the_last_year() -> None:
    customer = make_customers(1)[0]
    for key, days, status, amount in (
        ("a", 10, OrderStatus.COMPLETED, "100"),
        ("b", 300, OrderStatus.COMPLETED, "50.50"),
        ("c", 400, OrderStatus.COMPLETED, "999"),  # older than VALUE_WINDOW_DAYS
        ("d", 5, OrderStatus.CANCELLED, "999"),
        ("e", -1, OrderStatus.COMPLETED, "999"),  # after now
    ):
        Order.objects.create(
            external_id=key,
            customer=customer,
            placed_at=NOON - timedelta(days=days),
            amount=Decimal(amount),
            status=status,
        )
    values = selectors.customer_value_frame(id_range=(customer.pk, customer.pk), now=NOON)
    assert values.to_dict() == {customer.pk: 150.5}


def test_contact_history_usage_and_due_campaigns_follow_the_dispatch(
    email_rule: dict[str, Any],
) -> None:
    customers = make_customers(10)
    campaign = make_campaign(rules=[email_rule], control_percentage=30)
    paused = make_campaign(name="Paused", status=CampaignStatus.PAUSED, rules=[email_rule])
    ended = make_campaign(name="Ended", ends_at=NOON - timedelta(days=1), rules=[email_rule])
    due = selectors.campaigns_due(now=NOON, cycle_key_for=lambda **kw: ("k", NOON))
    assert due == [campaign] and paused not in due and ended not in due
    summary = campaign_dispatch(campaign=campaign, now=NOON)
    assert (
        selectors.campaigns_due(now=NOON, cycle_key_for=lambda **kw: (summary.cycle_key, NOON))
        == []
    )
    id_range = (customers[0].pk, customers[-1].pk)
    history = selectors.contact_history_frame(id_range=id_range, since=NOON - timedelta(days=1))
    assert len(history) == 10 and set(history["campaign_id"]) == {campaign.pk}
    assert selectors.contact_history_frame(id_range=id_range, since=NOON + timedelta(hours=1)).empty
    count, cost = selectors.campaign_usage(campaign=campaign)
    assert count == 10  # both arms count
    assert cost == float(sum(Intervention.objects.values_list("offer_cost", flat=True)))
