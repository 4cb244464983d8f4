"""The plan of a cycle: the same rules and suppression for both arms, budget order, no writes."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from campaigns.models import CampaignCycle, Coupon, Intervention
from campaigns.services.dispatch import campaign_cycle_key, campaign_dispatch
from campaigns.services.plan import campaign_plan
from tests.campaigns.conftest import (
    NOON,
    make_campaign,
    make_customers,
    make_template,
    mixed_population,
)

pytestmark = pytest.mark.django_db


def test_both_arms_go_through_exactly_the_same_rules_and_suppression(
    email_rule: dict[str, Any],
) -> None:
    mixed_population()
    sms = {
        "name": "high by sms",
        "tiers": ["high"],
        "channel": "sms",
        "template": make_template("sms", body="{{ offer.description }}"),
        "offer": None,
    }
    campaign = make_campaign(rules=[email_rule, sms], max_interventions_per_cycle=250)
    start = campaign_cycle_key(campaign=campaign, now=NOON)[1]
    decided = {}
    for percentage in (0, 100):  # everyone treated, then everyone control
        campaign.control_percentage = Decimal(percentage)
        plan = campaign_plan(campaign=campaign, now=NOON, cycle_start=start).decisions
        decided[percentage] = plan.set_index("customer_id")[["rule_index", "reason", "send_after"]]
    assert decided[0]["reason"].value_counts().to_dict() == {
        "": 250,  # the budget; 40 of them in Tokyo are scheduled (quiet hours), not dropped
        "budget_exhausted": 65,
        "erased": 40,
        "no_address": 40,
        "no_consent": 25 + 40,  # 25 revoked email; SMS consent defaults to no
    }
    assert decided[0]["send_after"].notna().sum() == 40
    pd.testing.assert_frame_equal(decided[0].sort_index(), decided[100].sort_index())
    # And a real dispatch records the same decisions, whatever the arm.
    campaign.control_percentage = Decimal(50)
    campaign_dispatch(campaign=campaign, now=NOON)
    recorded = pd.DataFrame(
        list(Intervention.objects.values("customer_id", "arm", "reason", "status"))
    ).set_index("customer_id")
    assert (recorded["reason"] == decided[0]["reason"].reindex(recorded.index)).all()
    assert set(recorded.loc[recorded["arm"] == "control", "status"]) <= {"held_out", "suppressed"}
    assert set(recorded["arm"]) == {"treatment", "control"}


def test_planning_writes_nothing(email_rule: dict[str, Any]) -> None:
    make_customers(20)
    campaign = make_campaign(rules=[email_rule])
    plan = campaign_plan(campaign=campaign, now=NOON, cycle_start=NOON - timedelta(hours=12))
    assert len(plan.decisions) == 20 and [r.name for r in plan.rules] == ["critical by email"]
    assert not Intervention.objects.exists() and not CampaignCycle.objects.exists()
    assert not Coupon.objects.exists()


def test_a_campaign_without_rules_or_matches_plans_nobody(email_rule: dict[str, Any]) -> None:
    make_customers(5, risk_tier="low")
    start = NOON - timedelta(hours=12)
    assert campaign_plan(campaign=make_campaign(), now=NOON, cycle_start=start).decisions.empty
    other = make_campaign(name="Other", rules=[email_rule])  # critical only: nobody matches
    plan = campaign_plan(campaign=other, now=NOON, cycle_start=start)
    assert plan.decisions.empty and len(plan.rules) == 1


def test_the_budget_goes_to_the_first_rule_then_the_riskiest(email_rule: dict[str, Any]) -> None:
    make_customers(3, churn_probability=0.7)
    riskiest = make_customers(2, start=10, churn_probability=0.95)
    high = make_customers(3, start=20, risk_tier="high", churn_probability=0.99)
    second = {**email_rule, "name": "high by email", "tiers": ["high"]}
    campaign = make_campaign(
        rules=[email_rule, second], control_percentage=0, max_interventions_per_cycle=4
    )
    plan = campaign_plan(campaign=campaign, now=NOON, cycle_start=NOON - timedelta(hours=12))
    taken = plan.decisions.loc[plan.decisions["reason"].eq(""), "customer_id"].tolist()
    assert taken[:2] == [c.pk for c in riskiest]  # rule 1 first, riskiest first
    assert len(taken) == 4 and not {c.pk for c in high} & set(taken)
    assert set(plan.decisions["status"]) == {"pending", "suppressed"}
