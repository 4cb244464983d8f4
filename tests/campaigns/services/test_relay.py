"""Delivery: the outbox relay against a real SMTP server and a real HTTP webhook; at most once."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from campaigns.channels.base import TransientDeliveryError
from campaigns.channels.email import EmailChannel
from campaigns.models import CallbackTask, Coupon, Intervention, Response
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import (
    RELAY_LEASE,
    RELAY_LEASE_RENEW,
    SENDING_STALE_AFTER,
    interventions_relay,
)
from campaigns.tasks import interventions_relay_task
from customers.models import Consent, Customer
from customers.selectors import customer_consent_state
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer, make_template
from tests.campaigns.servers import SmtpRecorder, WebhookRecorder, webhook_server

pytestmark = pytest.mark.django_db

SECRET = "test-webhook-secret"


@pytest.fixture
def webhook(settings: Any) -> Iterator[WebhookRecorder]:
    with webhook_server(SECRET) as (recorder, url):
        settings.SMS_BACKEND = "webhook"
        settings.SMS_WEBHOOK_URL, settings.SMS_WEBHOOK_SECRET = url, SECRET
        yield recorder


def emails_of(arm: str) -> set[str]:
    return set(Intervention.objects.filter(arm=arm).values_list("customer__email", flat=True))


def test_email_reaches_a_real_smtp_server_once_with_parts_and_one_click_unsubscribe(
    smtp: SmtpRecorder, email_rule: dict[str, Any]
) -> None:
    make_customers(60)
    campaign = make_campaign(rules=[email_rule], control_percentage=20)
    summary = campaign_dispatch(campaign=campaign, now=NOON)
    relayed = interventions_relay(now=NOON)
    assert relayed.sent == {"email": summary.pending} and len(smtp.messages) == summary.pending
    assert set(smtp.recipients()) == emails_of("treatment")
    assert not set(smtp.recipients()) & emails_of("control")

    message = smtp.messages[0]
    assert message.get_content_type() == "multipart/alternative"
    parts = {p.get_content_type(): p.get_content() for p in message.iter_parts()}
    to = str(message["To"])
    coupon = Coupon.objects.get(customer__email=to)
    assert coupon.code in parts["text/plain"] and coupon.code in parts["text/html"]
    assert str(message["Subject"]).endswith("15% off for you")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = "".join(str(message["List-Unsubscribe"]).split()).strip("<>")  # unfold the header
    assert link.startswith("http://127.0.0.1:8000/unsubscribe/")

    # One-click (RFC 8058): a POST to the link revokes email consent and logs a response.
    path = link.removeprefix("http://127.0.0.1:8000")
    client = Client()
    assert client.get(path).status_code == 200  # a link scanner's GET changes nothing
    customer = Customer.objects.get(email=to)
    assert customer_consent_state(customer=customer)["email"]["granted"] is True
    response = client.post(path, {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert customer_consent_state(customer=customer)["email"]["granted"] is False
    assert (
        Response.objects.filter(kind="unsubscribed", intervention__customer=customer).count() == 1
    )
    assert client.post(path[:-3] + "xyz").status_code == 400  # tampered token


def test_rerunning_the_cycle_and_the_relay_sends_each_intervention_at_most_once(
    smtp: SmtpRecorder, email_rule: dict[str, Any]
) -> None:
    make_customers(40)
    campaign = make_campaign(rules=[email_rule])
    first = campaign_dispatch(campaign=campaign, now=NOON)
    interventions_relay(now=NOON)
    campaign_dispatch(campaign=campaign, now=NOON)
    interventions_relay(now=NOON)
    interventions_relay_task.apply()  # the beat's task, duplicated
    assert len(smtp.messages) == first.pending
    assert max(Counter(smtp.recipients()).values()) == 1


class WorkerLost(BaseException):
    """Stands for the worker process dying (BaseException: nothing catches it)."""


def test_a_retried_relay_after_a_crash_mid_chunk_never_sends_twice(
    smtp: SmtpRecorder, email_rule: dict[str, Any]
) -> None:
    make_customers(12)
    campaign = make_campaign(rules=[email_rule], control_percentage=0)
    campaign_dispatch(campaign=campaign, now=NOON)
    real_send = EmailChannel.send
    calls = {"n": 0}

    def send_then_die_on_the_third(self: EmailChannel, message: Any) -> str:
        result = real_send(self, message)  # the SMTP server has it ...
        calls["n"] += 1
        if calls["n"] == 3:
            raise WorkerLost  # ... but the worker dies before recording it
        return result

    with (
        mock.patch.object(EmailChannel, "send", send_then_die_on_the_third),
        pytest.raises(WorkerLost),
    ):
        interventions_relay(now=NOON)
    assert len(smtp.messages) == 3
    # The task is redelivered at once: the crashed run's lease still holds its chunk.
    interventions_relay(now=NOON)
    assert len(smtp.messages) == 3
    # The rest of the chunk waits out the lease (minutes, not the time a whole chunk takes).
    assert interventions_relay(now=NOON + RELAY_LEASE - timedelta(seconds=1)).sent == {}
    later = NOON + RELAY_LEASE + timedelta(seconds=1)
    after_lease = interventions_relay(now=later)
    assert after_lease.sent == {"email": 9} and after_lease.stale_failed == 0
    assert len(smtp.messages) == 12
    assert max(Counter(smtp.recipients()).values()) == 1
    assert Intervention.objects.filter(status="sending").count() == 1
    # The one in flight is resolved by the first relay run (every minute) after it goes stale.
    assert interventions_relay(now=NOON + SENDING_STALE_AFTER).stale_failed == 0
    assert SENDING_STALE_AFTER + timedelta(minutes=1) <= timedelta(minutes=10)
    resolved = interventions_relay(now=NOON + SENDING_STALE_AFTER + timedelta(minutes=1))
    assert resolved.stale_failed == 1
    lost = Intervention.objects.get(reason="delivery_unknown")
    assert lost.status == "failed" and lost.attempts == 1
    admin = Client()
    admin.force_login(User.objects.create_superuser("ops", "ops@example.com", "x"))
    listed = admin.get("/admin/campaigns/intervention/", {"reason": "delivery_unknown"})
    assert listed.status_code == 200 and listed.context["cl"].result_count == 1
    assert interventions_relay(now=NOON + timedelta(days=1)).sent == {}
    assert len(smtp.messages) == 12


def test_a_slow_chunk_renews_its_lease_so_no_other_relay_takes_its_rows(
    smtp: SmtpRecorder, email_rule: dict[str, Any]
) -> None:
    make_customers(12)
    campaign_dispatch(campaign=make_campaign(rules=[email_rule], control_percentage=0), now=NOON)
    clock = {"now": NOON}
    real_send = EmailChannel.send
    per_send = RELAY_LEASE_RENEW + timedelta(seconds=10)  # a slow provider: 40 s a message

    def slow_send_then_die_on_the_sixth(self: EmailChannel, message: Any) -> str:
        result = real_send(self, message)
        clock["now"] += per_send
        if len(smtp.messages) == 6:
            raise WorkerLost
        return result

    with (
        mock.patch("campaigns.services.relay._wall_clock", lambda: clock["now"]),
        mock.patch.object(EmailChannel, "send", slow_send_then_die_on_the_sixth),
        pytest.raises(WorkerLost),
    ):
        interventions_relay()  # the relay's own clock (patched): 6 sends take 240 s
    # The first claim was at NOON; the lease renewed before the sixth send (NOON + 200 s) still
    # holds the six rows not reached, so a relay after the first lease's end takes none of them.
    renewed = NOON + 5 * per_send
    assert interventions_relay(now=renewed + RELAY_LEASE - timedelta(seconds=1)).sent == {}
    assert interventions_relay(now=renewed + RELAY_LEASE + timedelta(seconds=1)).sent == {
        "email": 6
    }
    assert len(smtp.messages) == 12 and max(Counter(smtp.recipients()).values()) == 1


def test_one_smtp_421_or_dropped_connection_spoils_nothing_else_in_the_run(
    smtp: SmtpRecorder, email_rule: dict[str, Any]
) -> None:
    make_customers(10)
    campaign_dispatch(campaign=make_campaign(rules=[email_rule], control_percentage=0), now=NOON)
    smtp.replies = {"c2@example.com": ["421 4.3.2 Service shutting down"]}  # smtplib hangs up
    smtp.drops = {"c5@example.com"}  # the server closes the connection without an answer
    relayed = interventions_relay(now=NOON)
    everyone = {f"c{i}@example.com" for i in range(10)}
    assert relayed.sent == {"email": 8} and relayed.retried == 2 and relayed.failed == {}
    assert set(smtp.recipients()) == everyone - {"c2@example.com", "c5@example.com"}
    # Each message used exactly the one attempt it made; the two that met the fault wait.
    attempts = dict(Intervention.objects.values_list("customer__email", "attempts"))
    assert attempts == dict.fromkeys(everyone, 1)
    waiting = Intervention.objects.filter(status="pending")
    assert set(waiting.values_list("customer__email", flat=True)) == {
        "c2@example.com",
        "c5@example.com",
    }
    assert "421" in waiting.get(customer__email="c2@example.com").detail
    assert interventions_relay(now=NOON + timedelta(seconds=61)).sent == {"email": 2}
    assert Counter(smtp.recipients()) == dict.fromkeys(everyone, 1)


def test_when_the_connection_cannot_be_reopened_the_rest_waits_without_using_attempts(
    smtp: SmtpRecorder, email_rule: dict[str, Any]
) -> None:
    make_customers(6)
    campaign_dispatch(campaign=make_campaign(rules=[email_rule], control_percentage=0), now=NOON)
    smtp.replies = {"c1@example.com": ["421 4.3.2 Service shutting down"]}
    real_open = EmailChannel.open
    opens = {"n": 0}

    def open_once(self: EmailChannel) -> None:
        opens["n"] += 1
        if opens["n"] > 1:  # the server stays away after its 421
            raise TransientDeliveryError("cannot connect to the mail server: refused")
        real_open(self)

    with mock.patch.object(EmailChannel, "open", open_once):
        relayed = interventions_relay(now=NOON)
    assert relayed.sent == {"email": 1} and relayed.retried == 1
    untouched = Intervention.objects.exclude(
        customer__email__in=["c0@example.com", "c1@example.com"]
    )
    assert set(untouched.values_list("status", "attempts", "claimed_at")) == {("pending", 0, None)}
    assert interventions_relay(now=NOON).sent == {"email": 4}  # due at once: no lease held
    assert interventions_relay(now=NOON + timedelta(seconds=61)).sent == {"email": 1}
    assert Counter(smtp.recipients()) == {f"c{i}@example.com": 1 for i in range(6)}


def test_transient_failures_retry_with_backoff_and_permanent_ones_are_recorded(
    smtp: SmtpRecorder, email_rule: dict[str, Any]
) -> None:
    make_customers(3)
    campaign = make_campaign(rules=[email_rule], control_percentage=0)
    campaign_dispatch(campaign=campaign, now=NOON)
    smtp.replies = {
        "c0@example.com": ["451 4.3.0 try again later"] * 2,
        "c1@example.com": ["550 5.1.1 no such user"],
    }
    first = interventions_relay(now=NOON)
    assert first.sent == {"email": 1} and first.retried == 1
    assert first.failed == {"provider_rejected": 1}
    retry = Intervention.objects.get(customer__email="c0@example.com")
    assert retry.status == "pending" and retry.send_after == NOON + timedelta(seconds=60)
    assert interventions_relay(now=NOON + timedelta(seconds=30)).sent == {}  # not yet due
    second = interventions_relay(now=NOON + timedelta(seconds=61))
    assert second.retried == 1  # the second 451; backoff doubles
    assert Intervention.objects.get(pk=retry.pk).send_after == NOON + timedelta(seconds=181)
    assert interventions_relay(now=NOON + timedelta(seconds=200)).sent == {"email": 1}
    assert Counter(smtp.recipients()) == {"c2@example.com": 1, "c0@example.com": 1}
    rejected = Intervention.objects.get(customer__email="c1@example.com")
    assert (rejected.status, rejected.reason) == ("failed", "provider_rejected")
    assert "550" in rejected.detail


def test_consent_revoked_after_dispatch_stops_the_message(
    smtp: SmtpRecorder, email_rule: dict[str, Any]
) -> None:
    customers = make_customers(5)
    campaign = make_campaign(rules=[email_rule], control_percentage=0)
    campaign_dispatch(campaign=campaign, now=NOON)
    Consent.objects.create(
        customer=customers[0], channel="email", status="revoked", recorded_at=NOON, source="t"
    )
    summary = interventions_relay(now=NOON)
    assert summary.sent == {"email": 4} and summary.suppressed_at_send == {"no_consent": 1}
    assert customers[0].email not in smtp.recipients()


def test_webhook_sms_is_hmac_signed_keyed_by_intervention_and_sent_at_most_once(
    webhook: WebhookRecorder,
) -> None:
    customers = make_customers(30, risk_tier="high")
    Consent.objects.bulk_create(
        [
            Consent(customer=c, channel="sms", status="granted", recorded_at=NOON, source="t")
            for c in customers
        ]
    )
    rule = {
        "name": "sms",
        "tiers": ["high"],
        "channel": "sms",
        "template": make_template("sms", body="Hi {{ first_name }}: {{ offer.description }}"),
        "offer": make_offer(kind="free_shipping", name="Free shipping"),
    }
    campaign = make_campaign(rules=[rule], control_percentage=20)
    summary = campaign_dispatch(campaign=campaign, now=NOON)
    webhook.statuses = [503]  # the provider hiccups once: retried later, not lost
    first = interventions_relay(now=NOON)
    assert first.retried == 1
    interventions_relay(now=NOON)
    interventions_relay(now=NOON + timedelta(minutes=5))
    campaign_dispatch(campaign=campaign, now=NOON)
    interventions_relay(now=NOON + timedelta(minutes=10))
    assert len(webhook.requests) == summary.pending
    assert webhook.valid()
    keys = [r["idempotency_key"] for r in webhook.requests]
    assert len(set(keys)) == len(keys) and all(k.startswith("intervention-") for k in keys)
    phones = {r["json"]["to"] for r in webhook.requests}
    control = set(
        Intervention.objects.filter(arm="control").values_list("customer__phone", flat=True)
    )
    assert phones and not phones & control
    assert webhook.requests[0]["json"]["body"].endswith(": free shipping")


def test_control_customers_are_never_contacted_through_any_channel(
    smtp: SmtpRecorder, webhook: WebhookRecorder, tmp_path: Any
) -> None:
    agent = User.objects.create_user("agent", is_staff=True)
    Group.objects.get_or_create(name="agents")[0].user_set.add(agent)
    make_customers(100, risk_tier="critical")
    make_customers(100, start=1000, risk_tier="high")
    make_customers(100, start=2000, risk_tier="medium")
    make_customers(100, start=3000, risk_tier="low")
    for tier, channel in (("high", "sms"), ("low", "call")):
        Consent.objects.bulk_create(
            [
                Consent(customer=c, channel=channel, status="granted", recorded_at=NOON, source="t")
                for c in Customer.objects.filter(risk_tier=tier)
            ]
        )
    offer = make_offer()
    campaign = make_campaign(
        control_percentage=30,
        rules=[
            {
                "name": "e",
                "tiers": ["critical"],
                "channel": "email",
                "offer": offer,
                "template": make_template("email"),
            },
            {
                "name": "s",
                "tiers": ["high"],
                "channel": "sms",
                "offer": offer,
                "template": make_template("sms", body="{{ coupon_code }}"),
            },
            {"name": "c", "tiers": ["medium"], "channel": "coupon", "offer": offer},
            {"name": "a", "tiers": ["low"], "channel": "callback", "offer": offer},
        ],
    )
    summary = campaign_dispatch(campaign=campaign, now=NOON)
    relayed = interventions_relay(now=NOON)
    assert relayed.sent == summary.per_channel
    assert set(summary.per_channel) == {"email", "sms", "coupon", "callback"}
    control = Customer.objects.filter(interventions__arm="control")
    treated = Customer.objects.filter(interventions__arm="treatment")
    assert control.count() > 60
    contacted = (
        set(smtp.recipients())
        | {r["json"]["to"] for r in webhook.requests}
        | set(
            Coupon.objects.filter(intervention__channel="coupon").values_list(
                "customer__email", flat=True
            )
        )
        | set(CallbackTask.objects.values_list("customer__email", flat=True))
    )
    assert not contacted & set(control.values_list("email", flat=True))
    assert not contacted & set(control.values_list("phone", flat=True))
    assert contacted == set(
        treated.exclude(risk_tier="high").values_list("email", flat=True)
    ) | set(treated.filter(risk_tier="high").values_list("phone", flat=True))
    assert not Coupon.objects.filter(customer__in=control).exists()
    assert set(Intervention.objects.filter(arm="control").values_list("status", flat=True)) == {
        "held_out"
    }


def test_callbacks_go_round_robin_to_agents() -> None:
    group = Group.objects.get_or_create(name="agents")[0]
    agents = [User.objects.create_user(f"agent{i}", is_staff=True) for i in range(3)]
    group.user_set.add(*agents)
    User.objects.create_user("not-staff").groups.add(group)  # only staff take calls
    customers = make_customers(7)
    Consent.objects.bulk_create(
        [
            Consent(
                customer=c,
                channel="call",
                status="granted",
                source="t",
                recorded_at=NOON - timedelta(days=7),
            )
            for c in customers
        ]
    )
    rule = {"name": "call", "channel": "callback", "offer": make_offer()}
    campaign = make_campaign(rules=[rule], control_percentage=0)
    campaign_dispatch(campaign=campaign, now=NOON)
    assert interventions_relay(now=NOON).sent == {"callback": 7}
    per_agent = Counter(CallbackTask.objects.values_list("assigned_agent__username", flat=True))
    assert per_agent == {"agent0": 3, "agent1": 2, "agent2": 2}
    assert set(CallbackTask.objects.values_list("status", flat=True)) == {"open"}


def test_the_relay_respects_the_per_channel_rate(email_rule: dict[str, Any]) -> None:
    make_customers(30)
    campaign_dispatch(campaign=make_campaign(rules=[email_rule], control_percentage=0), now=NOON)
    assert interventions_relay(now=NOON, max_per_channel={"email": 12}).sent == {"email": 12}
    assert Intervention.objects.filter(status="pending").count() == 18
