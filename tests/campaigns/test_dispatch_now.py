""" "Dispatch now" in the admin: without a broker (the embedded default) it delivers in-process
to a real SMTP server and says what it did; with a broker a real worker does the work and the
admin says it was queued and where to follow the cycle."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from campaigns.models import CallbackTask, Campaign, Intervention
from customers.models import Consent
from retention.celery import app as celery_app
from tests.campaigns.conftest import make_campaign, make_customers, make_offer, make_template
from tests.campaigns.servers import SmtpRecorder
from tests.worker import email_worker


def crm_client() -> Client:
    user = User.objects.create_user("crm", password="pw-for-tests-1", is_staff=True)
    user.groups.add(Group.objects.get(name="crm staff"))
    client = Client()
    client.force_login(user)
    return client


def two_channel_campaign() -> Campaign:
    """20 critical customers by email (2 of them erased), 5 high-risk ones by callback."""
    make_customers(18)
    make_customers(2, start=100, erased=True)
    callers = make_customers(5, start=200, risk_tier="high", churn_probability=0.6)
    Consent.objects.bulk_create(
        [
            Consent(
                customer=c, channel="call", status="granted", recorded_at=c.created_at, source="t"
            )
            for c in callers
        ]
    )
    offer = make_offer()
    rules: list[dict[str, Any]] = [
        {"name": "mail", "tiers": ["critical"], "channel": "email", "offer": offer},
        {"name": "call", "tiers": ["high"], "channel": "callback", "offer": offer},
    ]
    rules[0]["template"] = make_template("email")
    return make_campaign(rules=rules, control_percentage=0)


def dispatch_now(client: Client, campaign: Campaign) -> str:
    page = client.post(
        reverse("admin:campaigns_campaign_changelist"),
        {"action": "dispatch_now", "_selected_action": [campaign.pk]},
        follow=True,
    )
    assert page.status_code == 200
    return page.content.decode()


@pytest.mark.django_db
def test_dispatch_now_without_a_broker_delivers_and_says_what_it_did(
    smtp: SmtpRecorder, settings: Any
) -> None:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)  # the test runs at any hour
    campaign = two_channel_campaign()
    assert celery_app.conf.task_always_eager  # the embedded default: no broker

    html = dispatch_now(crm_client(), campaign)

    assert len(smtp.messages) == 18
    assert CallbackTask.objects.count() == 5
    assert "25 eligible, 25 treatment, 0 control (held out)." in html
    assert "Delivered now: 18 sent by email, 5 callback tasks created." in html
    assert "2 suppressed (customer erased: 2)." in html
    sent = Intervention.objects.filter(campaign=campaign, status="sent").count()
    assert sent == 23


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_dispatch_now_with_a_broker_queues_the_work_for_a_real_worker(
    require_postgres: None, require_redis: str, settings: Any
) -> None:
    campaign = two_channel_campaign()
    client = crm_client()
    with email_worker(require_redis) as recorder:
        html = dispatch_now(client, campaign)
        assert "queued; a worker dispatches the cycle, then delivers it." in html
        summary_url = reverse("admin:campaigns_campaign_summary", args=[campaign.pk])
        assert f'href="{summary_url}"' in html
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(recorder.messages) < 18:
            time.sleep(0.5)
    assert len(recorder.messages) == 18
    assert CallbackTask.objects.count() == 5
    summary = client.get(summary_url).content.decode()
    assert "<td>Treatment</td><td>Sent</td><td>23</td>" in summary
