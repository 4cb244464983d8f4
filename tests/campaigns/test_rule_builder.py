"""The rule builder (campaigns/admin_rules.py): rules made without JSON, checked against the
data's attributes and the tier table, and live counts that agree with the dispatch's preview —
with the reason when a rule reaches nobody."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.admin_rules import attribute_fields_forget
from campaigns.models import Campaign, Offer, Rule
from campaigns.services.dispatch import campaign_preview, campaign_rules_audience
from customers.models import Customer
from tests.campaigns.campaign_form import campaign_form
from tests.campaigns.conftest import make_campaign, make_customers, make_offer, make_template

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_attribute_keys() -> None:
    attribute_fields_forget()  # the keys are memoised for a minute; each test has its own data


def population() -> None:
    make_customers(30, attributes={"Contract": "Month-to-month", "tenure": 3})
    make_customers(20, start=100, attributes={"Contract": "Two year", "tenure": 40})
    make_customers(10, start=200, risk_tier="high", churn_probability=0.6)


def coupon(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "channel": "coupon", "offer": make_offer(name=f"offer {name}"), **fields}


def test_each_rule_counts_what_the_dispatch_would_take_and_says_why_one_reaches_nobody() -> None:
    population()
    two_year = [{"field": "Contract", "operator": "eq", "value": "Two year"}]
    nobody = [{"field": "Contract", "operator": "eq", "value": "Lifetime"}]
    campaign = make_campaign(
        control_percentage=0,
        rules=[
            coupon("two-year", tiers=["critical"], attribute_conditions=two_year),
            coupon("critical", tiers=["critical"]),
            coupon("lifetime", tiers=["critical"], attribute_conditions=nobody),
            coupon("critical again", tiers=["critical"]),
            {
                "name": "high by sms",
                "tiers": ["high"],
                "channel": "sms",
                "consent_channel": "sms",  # nobody consents: the SMS default is "no"
                "template": make_template("sms"),
            },
        ],
    )
    rules = list(campaign.rules.order_by("position", "pk"))
    counts = campaign_rules_audience(campaign=campaign, rules=rules, now=timezone.now())
    by_name = {a.name: a for a in counts}
    assert (by_name["two-year"].matching, by_name["two-year"].taken) == (20, 20)
    steps = (("risk tier is critical", 50), ("Contract = 'Two year'", 20))
    assert by_name["two-year"].steps == steps
    assert (by_name["critical"].matching, by_name["critical"].taken) == (50, 30)
    assert by_name["critical"].sendable == 30 and by_name["critical"].nobody_because == ""
    assert by_name["lifetime"].nobody_because == "no customer meets “Contract = 'Lifetime'”"
    assert by_name["critical again"].nobody_because == (
        "all 50 matching customers are taken by two-year, critical, lifetime"
    )
    assert by_name["high by sms"].nobody_because == "no customer meets “consents to sms”"
    # The same "eligible" as the preview of the saved campaign.
    preview = campaign_preview(campaign=campaign, now=timezone.now())
    assert sum(a.taken for a in counts) == preview.eligible == 50


def builder_offer() -> Offer:
    return Offer.objects.filter(name="Builder offer").first() or make_offer(name="Builder offer")


def form_data(**overrides: str) -> dict[str, Any]:
    rule = {
        "name": "Short tenure, critical",
        "tiers": ["critical"],
        "attribute_conditions_rows": "2",
        "attribute_conditions_0_field": "tenure",
        "attribute_conditions_0_operator": "lt",
        "attribute_conditions_0_value": "12",
        "attribute_conditions_1_field": "Contract",
        "attribute_conditions_1_operator": "in",
        "attribute_conditions_1_value": "Month-to-month, One year",
        "channel": "coupon",
        "offer": str(builder_offer().pk),
    }
    return campaign_form("Builder", rule, **overrides)


def test_a_rule_is_built_from_checkboxes_and_rows_and_stored_typed(admin_client: Client) -> None:
    population()
    form = admin_client.get(reverse("admin:campaigns_campaign_add")).content.decode()
    assert 'type="checkbox" name="rules-0-tiers" value="critical"' in form
    assert "tenure (number)" in form and "Contract (text)" in form  # fields from the data
    assert 'id="attribute-values-Contract"' in form and "Two year" in form
    response = admin_client.post(reverse("admin:campaigns_campaign_add"), form_data())
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = Rule.objects.get(campaign__name="Builder")
    assert rule.tiers == ["critical"]
    assert rule.attribute_conditions == [
        {"field": "tenure", "operator": "lt", "value": 12},
        {"field": "Contract", "operator": "in", "value": ["Month-to-month", "One year"]},
    ]
    # Edited again, the rows show the stored conditions back.
    change = admin_client.get(reverse("admin:campaigns_campaign_change", args=[rule.campaign_id]))
    assert 'value="Month-to-month, One year"' in change.content.decode()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"rules-0-attribute_conditions_0_value": "twelve"},
            "Row 1 (tenure): &#x27;twelve&#x27; is not a number",
        ),
        ({"rules-0-attribute_conditions_0_value": ""}, "Row 1 (tenure): a value is needed."),
        ({"rules-0-tiers": ["hihg"]}, "hihg is not one of the available choices"),
        (
            {
                "starts_at_0": "2026-12-10",
                "starts_at_1": "00:00",
                "ends_at_0": "2026-12-01",
                "ends_at_1": "00:00",
            },
            "The end must come after the start.",
        ),
    ],
)
def test_a_mistake_is_a_form_error_naming_it(
    admin_client: Client, overrides: dict[str, Any], message: str
) -> None:
    population()
    response = admin_client.post(reverse("admin:campaigns_campaign_add"), form_data(**overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Campaign.objects.filter(name="Builder").exists()


def test_the_audience_view_counts_the_unsaved_form(admin_client: Client) -> None:
    population()
    # Half held out: the arms are hashes of customer ids, so a 10% control of 30 customers
    # could be empty on some database's ids.
    data = form_data(**{"rules-0-attribute_conditions_rows": "1", "control_percentage": "50"})
    answer = admin_client.post(reverse("admin:campaigns_campaign_audience"), data).json()
    assert answer["errors"] == {}
    rule = answer["rules"]["0"]
    assert rule["matching"] == 30  # critical, tenure 3 < 12 (the Two-year customers have 40)
    assert rule["taken"] == answer["eligible"] == 30
    assert rule["control"] + rule["sendable"] == 30 and rule["control"] > 0
    broken = admin_client.post(
        reverse("admin:campaigns_campaign_audience"),
        form_data(**{"rules-0-attribute_conditions_0_value": "x"}),
    ).json()
    assert broken["rules"] == {} and "is not a number" in broken["errors"]["0"][0]
    assert not Campaign.objects.exists() and Customer.objects.count() == 60  # nothing written


def test_a_campaign_without_a_control_group_saves_with_a_warning(admin_client: Client) -> None:
    population()
    response = admin_client.post(
        reverse("admin:campaigns_campaign_add"), form_data(control_percentage="0"), follow=True
    )
    assert Campaign.objects.filter(name="Builder").exists()
    assert "has no control group (0%)" in response.content.decode()


def test_a_campaign_gets_a_stable_key_from_its_name_unique_and_never_only_digits() -> None:
    first = make_campaign(name="Win-back Q4", rules=[])
    second = make_campaign(name="Win back q4", rules=[])
    digits = make_campaign(name="2026", rules=[])
    assert (first.key, second.key, digits.key) == ("win-back-q4", "win-back-q4-2", "campaign-2026")
    first.name = "Renamed"
    first.save()
    first.refresh_from_db()
    assert first.key == "win-back-q4"  # renaming keeps the key the API uses
