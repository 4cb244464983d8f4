"""Erasure of one customer's personal data: nothing personal left anywhere in the database,
every uplift report unchanged, the customer never contacted again."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from campaigns.measurement.snapshots import campaign_uplift
from campaigns.models import Arm, Intervention, Response
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from campaigns.services.responses import response_record
from customers.models import Consent, Customer, Event, Order
from customers.services import consent_set, customer_erase, customer_pseudonym
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer, make_template

pytestmark = pytest.mark.django_db


def _database_text() -> str:
    """Every row of every table, as dumpdata writes it."""
    out = StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


def _erase(external_id: str) -> str:
    out = StringIO()
    call_command("erase_customer", external_id, stdout=out)
    return out.getvalue()


@pytest.fixture
def measured(settings: Any) -> list[Customer]:
    """A sent campaign with orders and responses in both arms."""
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.GLOBAL_CONTROL_PERCENT = 0
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    customers = make_customers(40, attributes={"plan": "gold"})
    rule = {
        "name": "critical by email",
        "tiers": ["critical"],
        "channel": "email",
        "offer": make_offer(),
        "template": make_template("email"),
    }
    campaign = make_campaign(rules=[rule], control_percentage=Decimal("30"))
    campaign_dispatch(campaign=campaign, now=NOON)
    interventions_relay(now=NOON)
    for index, customer in enumerate(customers[:24]):
        Order.objects.create(
            external_id=f"o{index}",
            customer=customer,
            placed_at=NOON + timedelta(days=1 + index % 9),
            amount=Decimal("20") + index,
        )
    for intervention in Intervention.objects.filter(arm=Arm.TREATMENT)[:6]:
        response_record(
            intervention=intervention,
            kind="converted",
            occurred_at=NOON + timedelta(days=2),
            idempotency_key=f"r{intervention.pk}",
            revenue=Decimal("30"),
        )
    return customers


def test_erasure_keeps_every_uplift_report_and_leaves_no_personal_data(
    measured: list[Customer],
) -> None:
    """Issue 12, point 9: the admin delete cascaded into interventions and responses and
    rewrote uplift history; erasure keeps them and removes only what identifies the person."""
    campaign = Intervention.objects.first().campaign  # type: ignore[union-attr]
    now = NOON + timedelta(days=40)
    before = campaign_uplift(campaign=campaign, now=now).to_json()
    # Customers with orders and responses in each arm, so the erasure touches the report's rows.
    treated = Intervention.objects.filter(arm=Arm.TREATMENT, responses__isnull=False).first()
    control = Intervention.objects.filter(arm=Arm.CONTROL, customer__orders__isnull=False).first()
    assert treated is not None and control is not None
    people = [treated.customer, control.customer]
    consent_set(customer=people[0], channel="email", status="granted", source="api")
    Event.objects.create(
        external_id="e1",
        customer=people[1],
        kind="visit",
        occurred_at=NOON,
        properties={"contact": people[1].email},
    )
    ids = [p.external_id for p in people]
    # Quoted as JSON strings, so "Customer 3" does not match "Customer 31".
    personal = [f'"{v}"' for p in people for v in (p.email, p.phone, p.name, p.external_id)]
    assert all(value in _database_text() for value in personal)

    for person in people:
        assert "erased: now erased-" in _erase(person.external_id)

    after = campaign_uplift(campaign=campaign, now=now).to_json()
    before["seconds"] = after["seconds"] = 0.0
    assert after == before
    text = _database_text()
    for value in personal:
        assert value not in text
    for person, external_id in zip(people, ids, strict=True):
        person.refresh_from_db()
        assert person.external_id == customer_pseudonym(external_id=external_id)
        assert person.erased and person.attributes == {}
        assert (person.name, person.email, person.phone) == ("", "", "")
        assert set(Consent.objects.filter(customer=person).values_list("status", flat=True)) == {
            "revoked"
        }
    assert Response.objects.filter(intervention__customer=people[0]).exists()
    assert Order.objects.filter(customer=people[1]).exists()
    assert Event.objects.get().kind == "visit"
    assert Response.objects.count() == 6 and Order.objects.count() == 24


def test_the_pseudonym_is_stable_and_erasing_twice_changes_nothing(db: None) -> None:
    [customer] = make_customers(1)
    expected = customer_pseudonym(external_id="c000000")
    assert expected.startswith("erased-") and len(expected) == 39
    assert customer_pseudonym(external_id="c000000") == expected
    assert "now " + expected in _erase("c000000")
    assert "already erased" in _erase("c000000")
    again = customer_erase(customer=customer)
    assert again.external_id == expected
    assert Customer.objects.get().external_id == expected
    # The same id imported again, then erased again: a second pseudonym, no collision.
    [returning] = make_customers(1)
    assert customer_erase(customer=returning).external_id not in (expected, "c000000")
    with pytest.raises(CommandError, match="no customer with external id 'nobody'"):
        _erase("nobody")
