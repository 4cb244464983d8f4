"""An unsubscribe is never ignored: a consent grant claiming a future time is refused, and a
one-click unsubscribe after a grant leaves consent revoked, so the next relay run skips them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from campaigns.services.responses import unsubscribe_url
from customers.models import Consent
from customers.services import consent_set
from tests.campaigns.conftest import NOON, make_campaign, make_customers
from tests.campaigns.servers import SmtpRecorder

pytestmark = pytest.mark.django_db


def put_consent(api: APIClient, external_id: str, **body: Any) -> Any:
    return api.put(f"/api/v1/customers/{external_id}/consent", body, format="json")


def test_a_consent_dated_in_the_future_is_refused_and_nothing_is_stored(api: APIClient) -> None:
    customer = make_customers(1)[0]
    future = (timezone.now() + timedelta(days=365 * 900)).isoformat()
    reply = put_consent(
        api, customer.external_id, channel="email", status="granted", recorded_at=future
    )
    assert reply.status_code == 400
    assert "recorded_at" in {d["field"] for d in reply.json()["error"]["details"]}
    assert not Consent.objects.exists()


def test_a_grant_beyond_the_clock_skew_allowance_is_refused(api: APIClient, settings: Any) -> None:
    settings.CONSENT_CLOCK_SKEW_SECONDS = 300
    customer = make_customers(1)[0]
    late = (timezone.now() + timedelta(minutes=6)).isoformat()
    reply = put_consent(
        api, customer.external_id, channel="email", status="granted", recorded_at=late
    )
    assert reply.status_code == 400 and not Consent.objects.exists()


def test_a_one_click_unsubscribe_after_a_future_claiming_grant_stops_the_next_email(
    api: APIClient, smtp: SmtpRecorder, email_rule: dict[str, Any]
) -> None:
    customers = make_customers(4)
    campaign = make_campaign(rules=[email_rule], control_percentage=0)
    campaign_dispatch(campaign=campaign, now=NOON)
    target = customers[0]
    within_allowance = (timezone.now() + timedelta(minutes=4)).isoformat()
    granted = put_consent(
        api, target.external_id, channel="email", status="granted", recorded_at=within_allowance
    )
    assert granted.status_code == 200 and granted.json()["granted"] is True

    url = unsubscribe_url(customer_id=target.pk)
    assert Client().post("/" + url.split("://", 1)[1].split("/", 1)[1]).status_code == 200

    assert Consent.objects.get(customer=target, channel="email").status == "revoked"
    summary = interventions_relay(now=NOON)
    assert summary.sent == {"email": 3} and summary.suppressed_at_send == {"no_consent": 1}
    assert target.email not in smtp.recipients()


def test_a_revocation_wins_over_an_earlier_received_grant_whatever_times_they_claim() -> None:
    customer = make_customers(1)[0]
    now = timezone.now()
    consent_set(customer=customer, channel="email", status="granted", source="t", recorded_at=now)
    consent_set(
        customer=customer,
        channel="email",
        status="revoked",
        source="t",
        recorded_at=now - timedelta(days=3),
    )
    assert Consent.objects.get(customer=customer).status == "revoked"


def test_a_backfilled_grant_older_than_the_stored_revocation_changes_nothing() -> None:
    customer = make_customers(1)[0]
    now = timezone.now()
    consent_set(customer=customer, channel="email", status="revoked", source="t", recorded_at=now)
    consent_set(
        customer=customer,
        channel="email",
        status="granted",
        source="import",
        recorded_at=now - timedelta(days=3),
    )
    assert Consent.objects.get(customer=customer).status == "revoked"


def test_a_stored_time_never_exceeds_the_arrival() -> None:
    customer = make_customers(1)[0]
    consent = consent_set(
        customer=customer,
        channel="email",
        status="granted",
        source="t",
        recorded_at=timezone.now() + timedelta(minutes=4),
    )
    consent.refresh_from_db()
    assert consent.recorded_at <= consent.received_at


def test_an_edited_consent_is_a_statement_received_now_and_a_future_edit_is_refused() -> None:
    customer = make_customers(1)[0]
    yesterday = timezone.now() - timedelta(days=1)
    consent = consent_set(
        customer=customer, channel="email", status="granted", source="t", recorded_at=yesterday
    )
    consent.recorded_at, consent.status = timezone.now(), "revoked"  # as the admin form does
    consent.full_clean()
    consent.save()
    consent.refresh_from_db()
    assert consent.status == "revoked" and consent.recorded_at <= consent.received_at
    consent.recorded_at = timezone.now() + timedelta(days=1)
    with pytest.raises(ValidationError) as refused:
        consent.full_clean()
    assert "recorded_at" in refused.value.message_dict


def test_the_unsubscribe_link_is_the_reversed_url_of_its_signed_token(settings: Any) -> None:
    """The link's path is reversed once and the token put in its place: the same URL as a
    reverse per message, and it resolves to the unsubscribe view with that token."""
    from django.core import signing
    from django.urls import resolve, reverse

    from campaigns.services.responses import UNSUBSCRIBE_SALT

    settings.PUBLIC_BASE_URL = "https://shop.example"
    for customer_id, intervention_id in [(1, None), (42, 7), (10**9, 10**12)]:
        link = unsubscribe_url(customer_id=customer_id, intervention_id=intervention_id)
        token = link.rsplit("/", 1)[1]
        assert signing.loads(token, salt=UNSUBSCRIBE_SALT) == {
            "c": customer_id,
            "i": intervention_id,
        }
        assert link == "https://shop.example" + reverse("campaigns-unsubscribe", args=[token])
        assert resolve(link.removeprefix("https://shop.example")).kwargs == {"token": token}
