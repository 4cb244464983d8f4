"""Dispatch: rules, the randomised holdout, the suppression policy and the cycle guard."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from django.db import IntegrityError, transaction

from campaigns.models import CampaignCycle, Coupon, Intervention
from campaigns.services.dispatch import campaign_dispatch, campaign_preview
from campaigns.services.relay import interventions_relay
from campaigns.suppression import holdout_is_control
from common.db.bulk import bulk_insert_ignore
from customers.models import Consent, Customer, Order
from tests.campaigns.conftest import (
    NOON,
    make_campaign,
    make_customers,
    make_offer,
    make_template,
    mixed_population,
)

pytestmark = pytest.mark.django_db


def arms(campaign: Any) -> dict[int, str]:
    return dict(Intervention.objects.filter(campaign=campaign).values_list("customer_id", "arm"))


def test_realised_control_share_is_within_sampling_error(email_rule: dict[str, Any]) -> None:
    n, p = 5000, 0.10
    make_customers(n)
    campaign = make_campaign(rules=[email_rule], control_percentage=Decimal("10"))
    summary = campaign_dispatch(campaign=campaign, now=NOON)
    sigma = math.sqrt(n * p * (1 - p))  # binomial: 21.2 customers
    assert summary.eligible == n
    assert abs(summary.control - n * p) <= 3 * sigma
    assert summary.treatment + summary.control == n
    assert Intervention.objects.filter(arm="control").count() == summary.control


def test_assignment_is_stable_across_reruns_and_cycles(email_rule: dict[str, Any]) -> None:
    make_customers(400)
    campaign = make_campaign(rules=[email_rule], cooldown_days=0, control_percentage=30)
    campaign_dispatch(campaign=campaign, now=NOON)
    first = arms(campaign)
    campaign_dispatch(campaign=campaign, now=NOON)  # same cycle again: nothing new
    assert arms(campaign) == first
    campaign_dispatch(campaign=campaign, now=NOON + timedelta(days=1))  # next cycle
    by_cycle = pd.DataFrame(
        list(Intervention.objects.values("customer_id", "cycle_id", "arm"))
    ).pivot(index="customer_id", columns="cycle_id", values="arm")
    assert by_cycle.shape == (400, 2)
    assert (by_cycle.iloc[:, 0] == by_cycle.iloc[:, 1]).all()
    # The function itself is a pure hash: same inputs, same arms, any process.
    ids = list(first)
    assert (
        holdout_is_control(salt="fixed-salt", customer_ids=ids, control_percentage=30)
        == [first[i] == "control" for i in ids]
    ).all()


def test_rerunning_a_cycle_creates_nothing_new(email_rule: dict[str, Any]) -> None:
    make_customers(200)
    campaign = make_campaign(rules=[email_rule])
    first = campaign_dispatch(campaign=campaign, now=NOON)
    again = campaign_dispatch(campaign=campaign, now=NOON + timedelta(hours=3))  # same day
    assert first.interventions_created == 200 and first.coupons == first.pending
    assert again.already_ran and not again.written and again.eligible == first.eligible
    assert Intervention.objects.count() == 200
    assert Coupon.objects.count() == first.coupons
    assert CampaignCycle.objects.count() == 1


def test_the_database_refuses_a_second_intervention_for_a_cycle(
    email_rule: dict[str, Any],
) -> None:
    make_customers(20)
    campaign = make_campaign(rules=[email_rule])
    campaign_dispatch(campaign=campaign, now=NOON)
    rows = pd.DataFrame(
        list(
            Intervention.objects.values(
                "campaign_id",
                "cycle_id",
                "rule_id",
                "customer_id",
                "arm",
                "channel",
                "churn_probability",
                "risk_tier",
                "model_version",
                "status",
                "reason",
                "created_at",
                "updated_at",
            )
        )
    ).assign(detail="", provider_message_id="", attempts=0, customer_value=0.0, offer_cost=0.0)
    with transaction.atomic():
        assert bulk_insert_ignore(Intervention, rows) == []  # ON CONFLICT DO NOTHING
    one = Intervention.objects.first()
    assert one is not None
    one.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        one.save()


def test_control_rows_can_never_hold_a_contact_status(email_rule: dict[str, Any]) -> None:
    make_customers(50)
    campaign = make_campaign(rules=[email_rule], control_percentage=50)
    campaign_dispatch(campaign=campaign, now=NOON)
    control = Intervention.objects.filter(arm="control").first()
    assert control is not None and control.status == "held_out"
    with pytest.raises(IntegrityError), transaction.atomic():
        Intervention.objects.filter(pk=control.pk).update(status="pending")


def test_each_suppression_reason_comes_from_its_cause(
    email_rule: dict[str, Any], settings: Any
) -> None:
    settings.CAMPAIGN_FREQUENCY_CAPS = {"email": (1, 7)}
    make_customers(10)  # c000000...: plain
    erased = make_customers(1, start=100, erased=True)[0]
    no_email = make_customers(1, start=200, email="")[0]
    revoked = make_customers(1, start=300)[0]
    consent = Consent(
        customer=revoked, channel="email", status="revoked", recorded_at=NOON, source="t"
    )
    consent.save()

    # Frequency cap: another campaign contacted c000000 by email yesterday.
    other = make_campaign(
        name="Other", rules=[{**email_rule, "name": "o"}], control_percentage=0, priority=200
    )
    first_id = Customer.objects.get(external_id="c000000").pk
    Customer.objects.exclude(pk=first_id).update(churn_probability=None)
    campaign_dispatch(campaign=other, now=NOON - timedelta(days=1))
    Customer.objects.update(churn_probability=0.8)

    # Higher priority: a priority-1 campaign takes c000001 in today's cycle first.
    vip_id = Customer.objects.get(external_id="c000001").pk
    vip = make_campaign(
        name="VIP", rules=[{**email_rule, "name": "v"}], priority=1, control_percentage=100
    )  # even a control assignment takes the customer
    Customer.objects.exclude(pk=vip_id).update(churn_probability=None)
    campaign_dispatch(campaign=vip, now=NOON)
    Customer.objects.update(churn_probability=0.8)

    campaign = make_campaign(
        rules=[email_rule],
        priority=50,
        control_percentage=0,
        max_interventions_per_cycle=5,
        cooldown_days=14,
    )
    summary = campaign_dispatch(campaign=campaign, now=NOON)
    reason = dict(
        Intervention.objects.filter(campaign=campaign).values_list(
            "customer__external_id", "reason"
        )
    )
    assert reason[erased.external_id] == "erased"
    assert reason[no_email.external_id] == "no_address"
    assert reason[revoked.external_id] == "no_consent"
    assert reason["c000000"] == "frequency_cap"
    assert reason["c000001"] == "higher_priority_campaign"
    assert list(reason.values()).count("") == 5
    assert list(reason.values()).count("budget_exhausted") == 3  # 8 open, budget of 5
    # Cooldown: the next day, everyone this campaign took (not the suppressed) is cooling down.
    settings.CAMPAIGN_FREQUENCY_CAPS = {}
    campaign_dispatch(campaign=campaign, now=NOON + timedelta(days=1))
    second = dict(
        Intervention.objects.filter(
            campaign=campaign, cycle__cycle_key__startswith="20261125"
        ).values_list("customer__external_id", "reason")
    )
    taken = [k for k, v in reason.items() if v == ""]
    assert all(second[k] == "cooldown" for k in taken)
    assert summary.suppressed["budget_exhausted"] == 3


def test_offer_value_budget_cuts_at_the_cost_limit(email_rule: dict[str, Any]) -> None:
    make_customers(30)
    campaign = make_campaign(
        rules=[email_rule], control_percentage=0, max_offer_value_per_cycle=Decimal("52")
    )  # unit cost 5 → 10 fit
    summary = campaign_dispatch(campaign=campaign, now=NOON)
    assert summary.pending == 10 and summary.suppressed == {"budget_exhausted": 20}
    assert summary.offer_cost == 50.0


def test_quiet_hours_delay_delivery_rather_than_drop_it(email_rule: dict[str, Any]) -> None:
    # 12:00 UTC is 21:00 in Tokyo: inside quiet hours (21-8); they end at 08:00 JST = 23:00 UTC.
    make_customers(20, time_zone="Asia/Tokyo")
    make_customers(5, start=100, time_zone="Europe/Paris")  # 13:00 local: send now
    campaign = make_campaign(rules=[email_rule], control_percentage=0)
    summary = campaign_dispatch(campaign=campaign, now=NOON)
    assert summary.scheduled == 20 and summary.pending == 5 and summary.suppressed == {}
    scheduled = Intervention.objects.filter(status="scheduled")
    assert {i.send_after for i in scheduled} == {datetime(2026, 11, 24, 23, 0, tzinfo=UTC)}
    assert interventions_relay(now=NOON).sent == {"email": 5}
    assert Intervention.objects.filter(status="scheduled").count() == 20
    assert interventions_relay(now=datetime(2026, 11, 24, 23, 1, tzinfo=UTC)).sent == {"email": 20}
    assert not Intervention.objects.filter(status__in=["scheduled", "pending"]).exists()


def test_first_matching_rule_wins_with_value_attribute_and_consent_conditions() -> None:
    rich, poor, monthly = (
        make_customers(3, start=0),
        make_customers(3, start=10),
        make_customers(3, start=20, attributes={"Contract": "Month-to-month", "tenure": 3}),
    )
    for c in rich:
        Order.objects.create(
            external_id=f"o{c.pk}",
            customer=c,
            placed_at=NOON - timedelta(days=30),
            amount=Decimal("600"),
        )
    Order.objects.create(
        external_id="old",
        customer=poor[0],
        amount=Decimal("900"),
        placed_at=NOON - timedelta(days=400),
    )  # outside the 365-day window
    granted = [
        Consent(customer=c, channel="sms", status="granted", recorded_at=NOON, source="t")
        for c in monthly[:2]
    ]
    granted += [
        Consent(customer=c, channel="call", status="granted", recorded_at=NOON, source="t")
        for c in rich
    ]
    Consent.objects.bulk_create(granted)
    offer = make_offer()
    email = make_template("email")
    sms = make_template("sms", body="Hi {{ first_name }}")
    campaign = make_campaign(
        control_percentage=0,
        rules=[
            {
                "name": "valuable",
                "min_value": Decimal("500"),
                "channel": "callback",
                "offer": offer,
            },
            {
                "name": "monthly + sms consent",
                "channel": "sms",
                "template": sms,
                "consent_channel": "sms",
                "attribute_conditions": [
                    {"field": "Contract", "operator": "eq", "value": "month-to-month"},
                    {"field": "tenure", "operator": "lt", "value": 12},
                ],
            },
            {"name": "everyone else", "channel": "email", "template": email, "offer": offer},
        ],
    )
    summary = campaign_dispatch(campaign=campaign, now=NOON)
    rule_of = dict(Intervention.objects.values_list("customer__external_id", "rule__name"))
    assert {rule_of[c.external_id] for c in rich} == {"valuable"}
    assert [rule_of[c.external_id] for c in monthly] == [
        "monthly + sms consent",
        "monthly + sms consent",
        "everyone else",
    ]
    assert {rule_of[c.external_id] for c in poor} == {"everyone else"}
    assert [r["treatment"]["taken"] for r in summary.per_rule] == [3, 2, 4]
    value = Intervention.objects.get(customer=rich[0]).customer_value
    assert value == 600.0


def test_coupons_are_unique_unguessable_and_only_for_treated_customers(
    email_rule: dict[str, Any],
) -> None:
    make_customers(300)
    make_customers(10, start=1000, erased=True)
    campaign = make_campaign(rules=[email_rule], control_percentage=20)
    summary = campaign_dispatch(campaign=campaign, now=NOON)
    coupons = list(Coupon.objects.select_related("intervention"))
    assert len(coupons) == summary.pending == summary.coupons
    assert len({c.code for c in coupons}) == len(coupons)
    assert all(len(c.code) == 19 and c.code.count("-") == 3 for c in coupons)
    assert {c.intervention.arm for c in coupons} == {"treatment"}
    assert {c.intervention.status for c in coupons} == {"pending"}
    assert all(c.expires_at == NOON + timedelta(days=30) for c in coupons)


def test_preview_writes_nothing_and_matches_the_dispatch(email_rule: dict[str, Any]) -> None:
    mixed_population()
    campaign = make_campaign(rules=[email_rule], max_interventions_per_cycle=100)
    preview = campaign_preview(campaign=campaign, now=NOON)
    assert Intervention.objects.count() == 0 and CampaignCycle.objects.count() == 0
    assert Coupon.objects.count() == 0
    dispatched = campaign_dispatch(campaign=campaign, now=NOON)
    for key in (
        "eligible",
        "treatment",
        "control",
        "pending",
        "scheduled",
        "suppressed",
        "per_rule",
        "offer_cost",
    ):
        assert getattr(preview, key) == getattr(dispatched, key), key
    assert preview.per_rule[0]["treatment"]["offer_cost"] == preview.offer_cost > 0


def test_customers_without_scores_are_not_eligible(email_rule: dict[str, Any]) -> None:
    make_customers(10, churn_probability=None, risk_tier="")
    summary = campaign_dispatch(campaign=make_campaign(rules=[email_rule]), now=NOON)
    assert summary.eligible == 0 and Intervention.objects.count() == 0
