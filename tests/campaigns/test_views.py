"""The public unsubscribe page: GET asks, POST (the button or a mail client's one-click)
revokes email consent and logs the response; a damaged link changes nothing."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client

from campaigns.models import Campaign, Response
from campaigns.services.responses import unsubscribe_url
from customers.models import Consent
from tests.campaigns.conftest import interventions_of

pytestmark = pytest.mark.django_db


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def test_the_unsubscribe_link_revokes_consent_and_logs_a_response(
    sent_campaign: Campaign,
) -> None:
    treated = interventions_of(sent_campaign, "treatment")[0]
    assert mail.outbox
    url = unsubscribe_url(customer_id=treated.customer_id, intervention_id=treated.pk)
    assert Client().post(path_of(url)).status_code == 200
    assert Consent.objects.get(customer_id=treated.customer_id, channel="email").status == "revoked"
    assert Response.objects.filter(intervention=treated, kind="unsubscribed").count() == 1


def test_opening_the_link_only_asks_for_confirmation(sent_campaign: Campaign) -> None:
    treated = interventions_of(sent_campaign, "treatment")[0]
    url = unsubscribe_url(customer_id=treated.customer_id, intervention_id=treated.pk)
    page = Client().get(path_of(url))
    assert page.status_code == 200 and b'<form method="post">' in page.content
    assert not Consent.objects.filter(customer_id=treated.customer_id).exists()
    assert not Response.objects.exists()


def test_a_damaged_link_is_refused_and_changes_nothing(sent_campaign: Campaign) -> None:
    treated = interventions_of(sent_campaign, "treatment")[0]
    path = path_of(unsubscribe_url(customer_id=treated.customer_id, intervention_id=treated.pk))
    damaged = path[:-3] + "xyz"
    for response in (Client().get(damaged), Client().post(damaged)):
        assert response.status_code == 400 and b"not valid" in response.content
    assert not Consent.objects.exists() and not Response.objects.exists()
