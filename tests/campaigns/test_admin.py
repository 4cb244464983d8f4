"""The admin as CRM staff and agents use it: preview (writes nothing), summary, log, callbacks."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from campaigns.models import CallbackTask, CampaignCycle, Intervention, Response
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from campaigns.services.setup import campaign_groups_ensure
from customers.models import Consent
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer

pytestmark = pytest.mark.django_db


def staff_client(username: str, group: str) -> tuple[Client, User]:
    campaign_groups_ensure()
    user = User.objects.create_user(username, password="pw-for-tests-1", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client, user


def test_crm_staff_preview_shows_counts_per_rule_and_arm_and_writes_nothing(
    email_rule: dict[str, Any],
) -> None:
    make_customers(50)
    make_customers(5, start=100, erased=True)
    campaign = make_campaign(rules=[email_rule], control_percentage=20)
    client, _ = staff_client("crm", "crm staff")
    response = client.get(reverse("admin:campaigns_campaign_preview", args=[campaign.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Nothing has been written" in html
    assert '<td class="eligible">55</td>' in html
    assert "Suppressed: erased" in html
    assert Intervention.objects.count() == 0 and CampaignCycle.objects.count() == 0
    # The campaign form with rules inline opens for the same user.
    change = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert change.status_code == 200 and "rules-0-name" in change.content.decode()


def test_summary_page_and_filtered_intervention_log(email_rule: dict[str, Any]) -> None:
    make_customers(30)
    campaign = make_campaign(rules=[email_rule], control_percentage=20)
    campaign_dispatch(campaign=campaign, now=NOON)
    client, _ = staff_client("crm", "crm staff")
    summary = client.get(reverse("admin:campaigns_campaign_summary", args=[campaign.pk]))
    page = summary.content.decode()
    assert summary.status_code == 200 and "Held out (control: nothing sent)" in page
    assert "held_out" not in page  # codes read as words
    log = client.get(reverse("admin:campaigns_intervention_changelist") + "?arm__exact=control")
    assert log.status_code == 200
    control = Intervention.objects.filter(arm="control").count()
    assert f"{control} interventions" in log.content.decode() or control == 1


def test_an_agent_sees_only_their_callbacks_and_records_an_outcome() -> None:
    client, agent = staff_client("agent", "agents")
    customers = make_customers(4)
    Consent.objects.bulk_create(
        [
            Consent(customer=c, channel="call", status="granted", recorded_at=NOON, source="t")
            for c in customers
        ]
    )
    rule = {"name": "call", "channel": "callback", "offer": make_offer(name="Loyalty gift")}
    campaign_dispatch(campaign=make_campaign(rules=[rule], control_percentage=0), now=NOON)
    interventions_relay(now=NOON)
    other = User.objects.create_user("other", is_staff=True)
    CallbackTask.objects.filter(pk=CallbackTask.objects.order_by("pk").last().pk).update(
        assigned_agent=other
    )
    page = client.get(reverse("admin:campaigns_mycallback_changelist"))
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("Loyalty gift") == 3  # their own three, not the other agent's

    task = CallbackTask.objects.filter(assigned_agent=agent).first()
    assert task is not None
    url = reverse("admin:campaigns_mycallback_change", args=[task.pk])
    assert client.get(url).status_code == 200
    posted = client.post(url, {"outcome": "reached_accepted", "notes": "will order"})
    assert posted.status_code == 302
    task.refresh_from_db()
    assert task.status == "done" and task.outcome == "reached_accepted"
    response = Response.objects.get(intervention=task.intervention)
    assert response.kind == "callback_outcome" and response.payload["agent"] == "agent"
    foreign = CallbackTask.objects.get(assigned_agent=other)
    assert client.get(
        reverse("admin:campaigns_mycallback_change", args=[foreign.pk])
    ).status_code in (302, 404)


def test_crm_staff_see_the_template_preview_and_may_call_it() -> None:
    from tests.campaigns.conftest import make_template

    template = make_template("email")
    client, _ = staff_client("crm", "crm staff")
    page = client.get(reverse("admin:campaigns_messagetemplate_change", args=[template.pk]))
    assert page.status_code == 200
    # No rule uses it yet: no invented sample customer or offer, and a hint instead.
    assert "Choose a rule to see its offer and one of its customers." in page.content.decode()
    response = client.post(
        reverse("admin:campaigns_messagetemplate_preview"),
        {"channel": "email", "subject": "Hello {{ first_name }}", "body": "x"},
    )
    assert response.status_code == 200
    assert response.json()["subject"] == "Hello"
