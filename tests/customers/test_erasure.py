"""Erasure of one customer's personal data: nothing personal left anywhere in the database,
every uplift report unchanged, the customer never contacted again."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE
from django.contrib.admin.models import LogEntry as AdminLogEntry
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.core.management import CommandError, call_command
from django.db import connection

from campaigns.measurement.snapshots import campaign_uplift
from campaigns.models import Arm, CallbackTask, Intervention, Response
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from campaigns.services.responses import response_record
from customers.models import Consent, Customer, Event, Order
from customers.services import consent_set, customer_erase, customer_pseudonym
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer, make_template

pytestmark = pytest.mark.django_db


def _columns_holding(values: list[str]) -> dict[str, set[str]]:
    """Which of `values` each text, varchar or JSON column of every table in the database holds
    (Django's or not), as whole words: "Customer 3" is not found in "Customer 31"."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() "
            "AND data_type IN ('text', 'character varying', 'json', 'jsonb')"
        )
        columns = cursor.fetchall()
        # The same whole-word test twice: PostgreSQL's regex finds the rows, Python's the values.
        in_sql = "|".join(rf"(?<![[:alnum:]_]){re.escape(v)}(?![[:alnum:]_])" for v in values)
        in_python = {v: re.compile(rf"(?<!\w){re.escape(v)}(?!\w)") for v in values}
        found: dict[str, set[str]] = {}
        for table, column in columns:
            cursor.execute(
                f'SELECT DISTINCT "{column}"::text FROM "{table}" WHERE "{column}"::text ~ %s',
                [in_sql],
            )
            texts = [row[0] for row in cursor.fetchall()]
            hits = {v for v, p in in_python.items() if any(p.search(t) for t in texts)}
            if hits:
                found[f"{table}.{column}"] = hits
    return found


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


def _personal_text_in_campaign_rows(people: list[Customer]) -> None:
    """What real campaign rows can hold about a person: a provider's error quoting the address,
    a client's response payload, an agent's callback notes."""
    treated, control = people
    intervention = Intervention.objects.filter(customer=treated, arm=Arm.TREATMENT).get()
    intervention.detail = f"550 5.1.1 <{treated.email}>: mailbox unavailable"
    intervention.save(update_fields=["detail"])
    Response.objects.filter(intervention=intervention).update(
        payload={"reply": f"this is {treated.name}, call me on {treated.phone}"}
    )
    CallbackTask.objects.create(
        customer=treated,
        intervention=intervention,
        due_at=NOON,
        notes=f"{treated.name} asked to use {treated.phone} only",
    )
    # The admin's History names what staff edited as it was shown then.
    staff = User.objects.create(username="agent", is_staff=True)
    callback = CallbackTask.objects.get()
    for obj in (treated, control, callback):
        AdminLogEntry.objects.create(
            user=staff,
            content_type=ContentType.objects.get_for_model(obj),
            object_id=str(obj.pk),
            object_repr=str(obj),
            action_flag=CHANGE,
            change_message='[{"changed": {"fields": ["Notes"]}}]',
        )
    Event.objects.create(
        external_id="e1",
        customer=control,
        kind="visit",
        occurred_at=NOON,
        properties={"contact": control.email},
    )


def test_erasure_keeps_every_uplift_report_and_leaves_no_personal_data(
    require_postgres: None,  # it searches every text column through information_schema
    measured: list[Customer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 12, point 9: the admin delete cascaded into interventions and responses and
    rewrote uplift history; erasure keeps them and removes only what identifies the person,
    from every column of every table, and no log line written meanwhile shows it."""
    campaign = Intervention.objects.first().campaign  # type: ignore[union-attr]
    now = NOON + timedelta(days=40)
    before = campaign_uplift(campaign=campaign, now=now).to_json()
    # Customers with orders and responses in each arm, so the erasure touches the report's rows.
    treated = Intervention.objects.filter(arm=Arm.TREATMENT, responses__isnull=False).first()
    control = Intervention.objects.filter(arm=Arm.CONTROL, customer__orders__isnull=False).first()
    assert treated is not None and control is not None
    people = [treated.customer, control.customer]
    consent_set(customer=people[0], channel="email", status="granted", source="api")
    _personal_text_in_campaign_rows(people)
    ids = [p.external_id for p in people]
    personal = [v for p in people for v in (p.email, p.phone, p.name, p.external_id)]
    held = _columns_holding(personal)
    assert set().union(*held.values()) == set(personal)
    for column in (
        "campaigns_intervention.detail",
        "campaigns_callbacktask.notes",
        "django_admin_log.object_repr",
    ):
        assert column in held  # the search reaches the campaign rows, not only customers

    with caplog.at_level(logging.DEBUG):
        for person in people:
            assert "erased: now erased-" in _erase(person.external_id)

    after = campaign_uplift(campaign=campaign, now=now).to_json()
    before["seconds"] = after["seconds"] = 0.0
    assert after == before
    assert _columns_holding(personal) == {}
    contact = [p.email for p in people] + [p.phone for p in people]
    assert not [value for value in contact if value in caplog.text]
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
    assert CallbackTask.objects.get().customer_id == people[0].pk
    assert Response.objects.count() == 6 and Order.objects.count() == 24


def test_the_pseudonym_is_stable_and_erasing_twice_changes_nothing(db: None) -> None:
    [customer] = make_customers(1)
    expected = customer_pseudonym(external_id="c000000")
    assert expected.startswith("erased-") and len(expected) == 39
    assert customer_pseudonym(external_id="c000000") == expected
    assert "now " + expected in _erase("c000000")
    assert "already erased" in _erase("c000000")
    again = customer_erase(customer=customer, requested_by="test")
    assert again.already_erased and again.customer.external_id == expected
    assert Customer.objects.get().external_id == expected
    # The same id imported again, then erased again: a second pseudonym, no collision.
    [returning] = make_customers(1)
    second = customer_erase(customer=returning, requested_by="test").customer.external_id
    assert second not in (expected, "c000000")
    with pytest.raises(CommandError, match="no customer with external id 'nobody'"):
        _erase("nobody")
