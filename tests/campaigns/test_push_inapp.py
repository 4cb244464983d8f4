"""In-app messages: the relay puts treatment customers' messages in their inbox, control
customers get none, the first fetch records delivery, read/dismiss log one response each."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from rest_framework.test import APIClient

from campaigns.models import Arm, InboxMessage, Intervention, InterventionStatus, Response
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer, make_template

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(settings: Any) -> Any:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    make_customers(20)
    template = make_template(
        "in_app",
        subject="{{ first_name }}, we kept this for you",
        body="{{ offer.description }} with {{ coupon_code }}",
        deep_link="shop://offers/{{ coupon_code }}",
    )
    rule = {"name": "inbox", "tiers": ["critical"], "channel": "in_app", "template": template}
    rule["offer"] = make_offer()
    campaign = make_campaign(rules=[rule], control_percentage=Decimal("50"))
    campaign_dispatch(campaign=campaign, now=NOON)
    return campaign


def test_treatment_inbox_has_the_message_control_has_none(campaign: Any, api: APIClient) -> None:
    summary = interventions_relay(channels=["in_app"])
    treated = Intervention.objects.filter(campaign=campaign, arm=Arm.TREATMENT)
    control = Intervention.objects.filter(campaign=campaign, arm=Arm.CONTROL)
    assert treated.exists() and control.exists()
    assert summary.sent == {"in_app": treated.count()}
    assert InboxMessage.objects.count() == treated.count()  # none for control customers

    one = treated.select_related("customer", "coupon").first()
    assert one is not None
    url = f"/api/v1/customers/{one.customer.external_id}/messages"
    body = api.get(url).json()
    (message,) = body
    first_name = one.customer.name.split()[0]
    assert message["title"] == f"{first_name}, we kept this for you"
    assert message["body"] == f"15% off with {one.coupon.code}"
    assert message["call_to_action"] == f"shop://offers/{one.coupon.code}"
    assert message["coupon_code"] == one.coupon.code
    # In the inbox = sent; first fetched by the app = delivered (one response, not two).
    one.refresh_from_db()
    assert one.status == InterventionStatus.DELIVERED and one.delivered_at is not None
    api.get(url)
    assert Response.objects.filter(intervention=one, kind="delivered").count() == 1

    for row in control.select_related("customer")[:3]:
        assert api.get(f"/api/v1/customers/{row.customer.external_id}/messages").json() == []
        assert row.status == InterventionStatus.HELD_OUT


def test_read_and_dismiss_replayed_log_one_response(campaign: Any, api: APIClient) -> None:
    interventions_relay(channels=["in_app"])
    first, second = (
        Intervention.objects.filter(campaign=campaign, arm=Arm.TREATMENT)
        .select_related("customer")
        .order_by("pk")[:2]
    )
    for intervention, action, kind in ((first, "read", "opened"), (second, "dismiss", "dismissed")):
        external_id = intervention.customer.external_id
        (message,) = api.get(f"/api/v1/customers/{external_id}/messages").json()
        url = f"/api/v1/customers/{external_id}/messages/{message['id']}/{action}"
        created = api.post(url, HTTP_IDEMPOTENCY_KEY=f"{action}-1")
        replay = api.post(url, HTTP_IDEMPOTENCY_KEY=f"{action}-1")
        retry_without_key = api.post(url)
        assert created.status_code == 201, created.content
        assert replay.status_code == 200 and replay.json()["replay"] is True
        assert retry_without_key.status_code == 200
        assert replay.json()["response"] == created.json()["response"]
        assert Response.objects.filter(intervention=intervention, kind=kind).count() == 1
        # Read or dismissed: no longer in the inbox.
        assert api.get(f"/api/v1/customers/{external_id}/messages").json() == []
    other = Intervention.objects.filter(campaign=campaign, arm=Arm.TREATMENT).exclude(
        pk__in=[first.pk, second.pk]
    )[0]
    wrong = f"/api/v1/customers/{other.customer.external_id}/messages/{message['id']}/read"
    missing = api.post(wrong)
    assert missing.status_code == 404
    assert "has no in-app message" in missing.json()["error"]["message"]


def test_expired_messages_leave_the_inbox(campaign: Any, api: APIClient) -> None:
    interventions_relay(channels=["in_app"])
    row = (
        Intervention.objects.filter(campaign=campaign, arm=Arm.TREATMENT)
        .select_related("customer")
        .first()
    )
    assert row is not None
    InboxMessage.objects.filter(intervention=row).update(expires_at=NOON)
    assert api.get(f"/api/v1/customers/{row.customer.external_id}/messages").json() == []
