"""The relay's rounds: several sends in flight (SMTP connections, HTTP threads), each round's
answers written together, and concurrent relays taking disjoint rows — with every guarantee of
the one-at-a-time relay (each message once, retries, rejections, unregistered devices)."""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.channels.push import vapid_key_pair
from campaigns.models import Intervention
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from customers.models import Device, DeviceStatus
from tests.campaigns.conftest import (
    NOON,
    make_campaign,
    make_customers,
    make_offer,
    make_template,
    point_email_at,
)
from tests.campaigns.push_servers import PushService, Subscription, push_service
from tests.campaigns.servers import SmtpRecorder, smtp_server


@dataclass
class OverlapRecorder(SmtpRecorder):
    """Counts the messages the server is answering at the same moment (a slow provider)."""

    in_flight: int = 0
    most_in_flight: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            return await super().handle_DATA(server, session, envelope)
        finally:
            self.in_flight -= 1


@pytest.fixture
def slow_smtp(settings: Any) -> Iterator[OverlapRecorder]:
    recorder = OverlapRecorder(delay=0.1)
    with smtp_server(recorder) as (_, port):
        point_email_at(settings, port)
        yield recorder


def email_campaign(customers: int) -> None:
    make_customers(customers)
    rule: dict[str, Any] = {"name": "critical by email", "tiers": ["critical"], "channel": "email"}
    rule |= {"offer": make_offer(), "template": make_template("email")}
    campaign_dispatch(campaign=make_campaign(rules=[rule], control_percentage=0), now=NOON)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("connections", "round_messages", "overlap"),
    [(1, 1, False), (4, 1, False), (1, 10, False), (2, 8, False), (1, 1, True), (2, 8, True)],
)
def test_smtp_connections_overlap_a_slow_server_and_send_each_message_once(
    slow_smtp: OverlapRecorder, settings: Any, connections: int, round_messages: int, overlap: bool
) -> None:
    settings.CAMPAIGN_RELAY_SMTP_CONNECTIONS = connections
    settings.CAMPAIGN_RELAY_ROUND_MESSAGES = round_messages
    settings.CAMPAIGN_RELAY_OVERLAP_ROUNDS = overlap
    email_campaign(24)
    slow_smtp.replies = {
        "c3@example.com": ["451 4.3.0 try again later"],
        "c7@example.com": ["550 5.1.1 no such user"],
    }
    with CaptureQueriesContext(connection) as queries:
        relayed = interventions_relay(now=NOON)
    # One at-most-once gate (and one commit) per round of max(connections, round) messages.
    gates = [q for q in queries if "RETURNING" in q["sql"] and "attempts" in q["sql"]]
    assert len(gates) == -(-24 // max(connections, round_messages))
    assert relayed.sent == {"email": 22} and relayed.retried == 1
    assert relayed.failed == {"provider_rejected": 1}
    # One message in flight per connection: the default never overlaps, several do.
    assert (slow_smtp.most_in_flight > 1) is (connections > 1)
    statuses = dict(Intervention.objects.values_list("customer__email", "status"))
    assert statuses.pop("c3@example.com") == "pending"
    assert statuses.pop("c7@example.com") == "failed"
    assert set(statuses.values()) == {"sent"}
    ids = Intervention.objects.filter(status="sent").values_list("provider_message_id", flat=True)
    assert all(i.startswith("<intervention-") for i in ids) and len(set(ids)) == 22
    assert Counter(slow_smtp.recipients()) == dict.fromkeys(statuses, 1)


@pytest.mark.django_db
def test_the_relay_claims_chunks_of_the_configured_size_and_sends_each_message_once(
    slow_smtp: OverlapRecorder, settings: Any
) -> None:
    settings.CAMPAIGN_RELAY_CHUNK = 5
    settings.CAMPAIGN_RELAY_SMTP_CONNECTIONS = settings.CAMPAIGN_RELAY_ROUND_MESSAGES = 2
    slow_smtp.delay = 0
    email_campaign(24)
    with CaptureQueriesContext(connection) as queries:
        relayed = interventions_relay(now=NOON)
    claims = [q["sql"] for q in queries if "SKIP LOCKED" in q["sql"] or "claimed_at" in q["sql"]]
    claims = [
        sql for sql in claims if sql.lstrip().upper().startswith("UPDATE") and "LIMIT 5" in sql
    ]
    assert len(claims) >= 24 // 5  # 24 rows in claims of at most 5
    assert relayed.sent == {"email": 24}
    assert Counter(slow_smtp.recipients()) == {f"c{i}@example.com": 1 for i in range(24)}


@pytest.mark.django_db
def test_the_relay_queries_per_chunk_not_per_message(
    slow_smtp: OverlapRecorder, settings: Any
) -> None:
    """A chunk reads only some columns of its rows (`_CHUNK_COLUMNS`): a column a message needs
    but the chunk did not read would cost a query per message. Relaying 3 or 15 messages (one
    chunk, one round each) must run the same queries."""
    settings.CAMPAIGN_RELAY_SMTP_CONNECTIONS = 2
    settings.CAMPAIGN_RELAY_ROUND_MESSAGES = 50
    slow_smtp.delay = 0
    email_campaign(18)
    customers = list(Intervention.objects.order_by("pk").values_list("customer_id", flat=True))
    counted = []
    for some in (customers[:3], customers[3:]):
        with CaptureQueriesContext(connection) as queries:
            relayed = interventions_relay(now=NOON, customer_ids=some)
        assert relayed.sent == {"email": len(some)}
        counted.append([re.sub(r"\d+", "N", q["sql"].split(" WHERE ")[0][:80]) for q in queries])
    assert counted[0] == counted[1]
    assert Counter(slow_smtp.recipients()) == {f"c{i}@example.com": 1 for i in range(18)}
    # What the message shows of the customer and the coupon came from the chunk's columns.
    message = slow_smtp.messages[-1]
    intervention = Intervention.objects.select_related("coupon").get(customer__email=message["To"])
    assert intervention.coupon.code in message.get_body(("plain",)).get_content()


@pytest.mark.django_db
def test_a_relay_for_some_customers_sends_only_their_messages(slow_smtp: OverlapRecorder) -> None:
    """The triggered relay (after an event) sends the entered customers' messages at once and
    leaves the rest of the outbox (a nightly backlog) to the relay beat and the cycle."""
    email_campaign(6)
    wanted = list(
        Intervention.objects.filter(
            customer__email__in=["c2@example.com", "c4@example.com"]
        ).values_list("customer_id", flat=True)
    )
    relayed = interventions_relay(now=NOON, customer_ids=wanted)
    assert relayed.sent == {"email": 2}
    assert sorted(slow_smtp.recipients()) == ["c2@example.com", "c4@example.com"]
    assert Intervention.objects.filter(status="pending").count() == 4


@pytest.fixture
def push(settings: Any) -> Iterator[PushService]:
    with push_service() as running:
        settings.WEBPUSH_VAPID_PRIVATE_KEY, settings.WEBPUSH_VAPID_PUBLIC_KEY = vapid_key_pair()
        settings.WEBPUSH_VAPID_SUBJECT = "mailto:push@shop.example"
        settings.PUSH_ALLOW_HTTP = True
        settings.CAMPAIGN_QUIET_HOURS = (0, 0)
        settings.CAMPAIGN_RELAY_HTTP_THREADS = 4
        yield running


@pytest.mark.django_db
def test_push_in_threads_sends_each_once_records_each_answer_and_writes_per_round(
    push: PushService,
) -> None:
    customers = make_customers(24)
    subscription = Subscription.new(f"{push.base_url}/wp/any")  # one key pair serves all
    keys = subscription.as_json()["keys"]
    Device.objects.bulk_create(
        [
            Device(
                customer=c,
                platform="web",
                token=f"{push.base_url}/wp/{c.external_id}",
                p256dh=keys["p256dh"],
                auth=keys["auth"],
                status=DeviceStatus.ACTIVE,
                last_seen_at=NOON,
            )
            for c in customers
        ]
    )
    gone = [c.external_id for c in customers[:3]]
    push.web_answers = {f"/wp/{g}": [410] for g in gone}
    push.web_answers[f"/wp/{customers[5].external_id}"] = [503]
    push.web_answers[f"/wp/{customers[6].external_id}"] = [400]
    template = make_template("push", subject="{{ first_name }}, hello", body="Come back.")
    rule = {"name": "push", "tiers": ["critical"], "channel": "push", "template": template}
    campaign = make_campaign(rules=[rule | {"offer": make_offer()}], control_percentage=0)
    campaign_dispatch(campaign=campaign, now=NOON)

    with CaptureQueriesContext(connection) as queries:
        relayed = interventions_relay(now=NOON, channels=["push"])

    assert relayed.sent == {"push": 19} and relayed.retried == 1
    assert relayed.failed == {"provider_rejected": 4}
    paths = Counter(r["path"] for r in push.of_kind("webpush"))
    assert set(paths.values()) == {1} and len(paths) == 24
    assert subscription.decrypt(push.of_kind("webpush")[-1]["body"])["body"] == "Come back."
    by_customer = {i.customer.external_id: i for i in Intervention.objects.all()}
    assert by_customer[customers[5].external_id].status == "pending"
    assert "503" in by_customer[customers[5].external_id].detail
    assert "400" in by_customer[customers[6].external_id].detail
    for external_id in gone:
        assert by_customer[external_id].status == "failed"
        assert "unregistered" in by_customer[external_id].detail
    unregistered = Device.objects.filter(status=DeviceStatus.UNREGISTERED)
    assert set(unregistered.values_list("customer__external_id", flat=True)) == set(gone)
    # Rounds of four: the gate and the answers are one statement each per round, not per message.
    writes = [q for q in queries if q["sql"].startswith('UPDATE "campaigns_intervention"')]
    assert len(writes) <= 3 * (24 // 4) + 3


def test_two_relays_at_once_take_disjoint_rows_and_send_each_message_once(
    require_postgres: None, transactional_db: None, settings: Any
) -> None:
    with smtp_server() as (smtp, port):
        point_email_at(settings, port)
        email_campaign(300)  # two chunks of 200 at most each: both relays find work
        sent: list[int] = []
        errors: list[BaseException] = []

        def relay() -> None:
            try:
                sent.append(interventions_relay(now=NOON).sent.get("email", 0))
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=relay) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors
        assert sum(sent) == 300
        assert Counter(smtp.recipients()) == {f"c{i}@example.com": 1 for i in range(300)}
        assert set(Intervention.objects.values_list("status", flat=True)) == {"sent"}
