"""The message template admin: the live preview endpoint renders the unsaved template for a
real customer of the chosen rule with the rule's offer; no subject off email; SMS length."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.http import HttpRequest
from django.test import Client

from campaigns.models import Coupon, Intervention, MessageTemplate
from campaigns.services.dispatch import campaign_dispatch
from scoring.models import CustomerScore
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer, make_template

pytestmark = pytest.mark.django_db
URL = "/admin/campaigns/messagetemplate/preview/"
CODE = re.compile(r"^[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}-[A-Z2-7]{4}$")


def _client(user: User) -> Client:
    client = Client()
    client.login(request=HttpRequest(), username=user.username, password="pw-123456789")
    return client


@pytest.fixture
def staff(db: None) -> Client:
    return _client(User.objects.create_superuser("boss", password="pw-123456789"))


@pytest.fixture
def rule(db: None) -> Any:
    make_customers(3, risk_tier="high", churn_probability=0.5)
    riskiest = make_customers(1, start=50, name="Ada Lovelace", churn_probability=0.95)[0]
    make_customers(2, start=60, risk_tier="low", churn_probability=0.99)  # outside the rule
    offer = make_offer(name="Spring", kind="amount_coupon", value="12.50", validity_days=10)
    template = make_template("email")
    campaign = make_campaign(
        rules=[{"name": "high", "tiers": ["high", "critical"], "channel": "email",
                "offer": offer, "template": template}]
    )  # fmt: skip
    CustomerScore.objects.filter(customer=riskiest).delete()
    return campaign.rules.get()


def _post(client: Client, **fields: Any) -> Any:
    data = {"channel": "email", "subject": "", "body": "", "html_body": "", **fields}
    return client.post(URL, data)


def test_the_preview_renders_the_unsaved_body_for_a_customer_of_the_rule(
    staff: Client, rule: Any
) -> None:
    response = _post(
        staff,
        preview_rule=str(rule.pk),
        subject="{{ first_name }}: {{ offer.description }}",
        body="Hi {{ customer.name }}, {{ offer.description }} with {{ coupon_code }}.",
    )
    assert response.status_code == 200
    body = response.json()
    # The riskiest customer inside the rule's tiers (the low tier is outside it).
    assert body["customer"] == "Ada Lovelace (c000050)"
    assert body["subject"] == "Ada: €12.50 off"
    code = body["text"].split(" with ")[1].rstrip(".")
    assert CODE.match(code)
    assert body["text"] == f"Hi Ada Lovelace, €12.50 off with {code}."
    assert body["offer"] == "Spring (€12.50 off)"
    assert not Coupon.objects.exists() and not Intervention.objects.exists()  # nothing written


def test_a_customer_the_rule_took_is_preferred_and_one_can_be_named(
    staff: Client, rule: Any, settings: Any
) -> None:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    campaign_dispatch(campaign=rule.campaign, now=NOON)
    taken = Intervention.objects.filter(rule=rule, arm="treatment").latest("created_at")
    body = _post(staff, preview_rule=str(rule.pk), body="{{ customer.name }}").json()
    assert body["text"] == taken.customer.name
    named = _post(
        staff, preview_rule=str(rule.pk), preview_customer="c000001", body="{{ customer.name }}"
    )
    assert named.json()["text"] == "Customer 1"
    missing = _post(staff, preview_customer="nobody", body="x")
    assert missing.status_code == 400
    assert missing.json()["error"] == "No customer with external id or id 'nobody'."


def test_sms_and_callback_previews_have_no_subject_and_sms_shows_its_segments(
    staff: Client, rule: Any
) -> None:
    sms = _post(staff, channel="sms", preview_rule=str(rule.pk), subject="ignored",
                body="Hi {{ first_name }} " + "x" * 160).json()  # fmt: skip
    assert sms["subject"] is None
    assert sms["sms"]["segments"] == 2
    assert sms["sms"]["describe"] == "167 characters, 2 segments (GSM-7)"
    callback = _post(staff, channel="callback", body="Call {{ customer.name }}").json()
    assert callback["subject"] is None and callback["sms"] is None
    assert callback["html"] == ""


def test_a_template_error_comes_back_as_a_readable_message(staff: Client, rule: Any) -> None:
    response = _post(staff, body="{{ customer.email }}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("Unknown variable: {{ customer.email }} (line 1). Allowed: first_name")


def test_staff_without_the_template_permission_get_a_readable_refusal(db: None) -> None:
    user = User.objects.create_user("clerk", password="pw-123456789", is_staff=True)
    response = _post(_client(user), body="x")
    assert response.status_code == 403
    assert response.json() == {
        "ok": False,
        "error": "You do not have permission to preview message templates.",
    }
    user.user_permissions.add(Permission.objects.get(codename="view_messagetemplate"))
    assert _post(_client(user), body="x").status_code == 200


def test_the_change_form_shows_the_preview_and_refuses_an_unknown_variable(
    staff: Client, rule: Any
) -> None:
    template = MessageTemplate.objects.get()
    url = f"/admin/campaigns/messagetemplate/{template.pk}/change/"
    page = staff.get(url).content.decode()
    assert 'id="template-preview"' in page and "template_preview.js" in page
    assert "Hi Ada, use " in page  # the saved template rendered for the rule's customer
    response = staff.post(url, {"name": template.name, "channel": "email", "subject": "s",
                                "body": "Hi {{ customer.email }}", "html_body": ""})  # fmt: skip
    assert response.status_code == 200  # the form again, with the error
    assert "Unknown variable: {{ customer.email }} (line 1). Allowed: first_name" in (
        response.content.decode().replace("&#x27;", "'")
    )
    assert MessageTemplate.objects.get().body != "Hi {{ customer.email }}"


def test_the_add_form_has_an_empty_preview_and_asks_for_a_channel(staff: Client) -> None:
    page = staff.get("/admin/campaigns/messagetemplate/add/")
    assert page.status_code == 200
    assert 'id="template-preview"' in page.content.decode()
    response = _post(staff, channel="", body="Hi {{ first_name }}")
    assert response.status_code == 400
    assert response.json()["error"] == "Choose a channel to see a preview."
    assert staff.get(URL).status_code == 405  # the endpoint only renders posted templates
