"""Deleting customers in the admin: a customer the campaigns decided about is kept (deleting it
would cascade to its interventions and responses, the evidence uplift is measured on) and staff
are pointed to erasure; a customer without interventions is deleted as before."""

from __future__ import annotations

from datetime import timedelta
from html import unescape
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from campaigns.models import Intervention, Response
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.responses import response_record
from customers.models import Customer
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer

pytestmark = pytest.mark.django_db

KEPT = "kept, with 1 campaign intervention"
ERASE = "python manage.py erase_customer c000000"


@pytest.fixture
def decided(settings: Any) -> Customer:
    """c000000..c000003 get a coupon decision (treatment or control) and c000000 a response;
    c000100 was imported but never in a campaign."""
    settings.GLOBAL_CONTROL_PERCENT = 0
    make_customers(4)
    make_customers(1, start=100, risk_tier="low")
    rule = {"name": "coupon", "tiers": ["critical"], "channel": "coupon", "offer": make_offer()}
    campaign_dispatch(campaign=make_campaign(rules=[rule], control_percentage=50), now=NOON)
    customer = Customer.objects.get(external_id="c000000")
    response_record(
        intervention=customer.interventions.get(),  # type: ignore[attr-defined]
        kind="converted",
        occurred_at=NOON + timedelta(days=1),
        idempotency_key="admin-delete-1",
    )
    return customer


def test_the_delete_page_keeps_a_customer_with_interventions_and_points_to_erasure(
    admin_client: Client, decided: Customer
) -> None:
    url = reverse("admin:customers_customer_delete", args=[decided.pk])
    page = unescape(admin_client.get(url).content.decode())
    assert f"Customer c000000: {KEPT}" in page and ERASE in page
    assert "POST /api/v1/customers/c000000/erase" in page
    assert "Yes, I’m sure" not in page  # nothing to confirm
    assert "permission" not in page  # no other account could delete it either
    admin_client.post(url, {"post": "yes"})
    assert Customer.objects.filter(pk=decided.pk).exists()
    assert Intervention.objects.filter(customer=decided).count() == 1
    assert Response.objects.filter(intervention__customer=decided).count() == 1


def test_delete_selected_refuses_when_any_selected_customer_has_interventions(
    admin_client: Client, decided: Customer
) -> None:
    chosen = Customer.objects.filter(external_id__in=["c000000", "c000001", "c000100"])
    form = {"action": "delete_selected", "_selected_action": [c.pk for c in chosen]}
    changelist = reverse("admin:customers_customer_changelist")
    page = unescape(admin_client.post(changelist, form).content.decode())
    assert f"Customer c000000: {KEPT}" in page and f"Customer c000001: {KEPT}" in page
    assert "c000100:" not in page  # never in a campaign: nothing of the campaigns' to keep
    admin_client.post(changelist, {**form, "post": "yes"})
    assert Customer.objects.count() == 5 and Intervention.objects.count() == 4


def test_a_customer_never_in_a_campaign_is_deleted_as_before(
    admin_client: Client, decided: Customer
) -> None:
    other = Customer.objects.get(external_id="c000100")
    url = reverse("admin:customers_customer_delete", args=[other.pk])
    page = unescape(admin_client.get(url).content.decode())
    assert "Yes, I’m sure" in page and "kept, with" not in page
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Customer.objects.filter(pk=other.pk).exists()
    assert Customer.objects.count() == 4 and Intervention.objects.count() == 4
