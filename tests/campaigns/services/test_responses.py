"""Recording responses at the service level: idempotency keys, atomic batches, what a response
changes (delivery state, bounces, consent), provider events, callback outcomes, unsubscribes."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core import signing

from campaigns.models import CallbackTask, Campaign, Intervention, Response
from campaigns.services.callbacks import callback_task_record_outcome
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from campaigns.services.responses import (
    MAX_BATCH_ITEMS,
    ResponseItem,
    ResponseItemsError,
    customer_unsubscribe,
    provider_events_record,
    response_record,
    responses_record_batch,
    unsubscribe_token_make,
    webhook_signature_valid,
)
from customers.models import Consent
from customers.selectors import customer_consent_state
from tests.campaigns.conftest import (
    NOON,
    interventions_of,
    make_campaign,
    make_customers,
    make_offer,
)

pytestmark = pytest.mark.django_db

LATER = NOON + timedelta(hours=2)


def opened(key: str, intervention_id: int) -> ResponseItem:
    return ResponseItem(
        kind="opened", occurred_at=LATER, idempotency_key=key, intervention_id=intervention_id
    )


def test_a_response_is_recorded_once_per_idempotency_key(sent_campaign: Campaign) -> None:
    treated = interventions_of(sent_campaign, "treatment")[0]
    first, created = response_record(
        intervention=treated, kind="opened", occurred_at=LATER, idempotency_key="k"
    )
    again, created_again = response_record(
        intervention=treated, kind="clicked", occurred_at=LATER, idempotency_key="k"
    )
    assert created and not created_again
    assert again.pk == first.pk and again.kind == "opened"
    assert Response.objects.count() == 1


def test_a_batch_records_in_order_and_a_replay_returns_the_originals(
    sent_campaign: Campaign,
) -> None:
    treated = interventions_of(sent_campaign, "treatment")
    control = interventions_of(sent_campaign, "control")[0]
    items = [
        opened("a", treated[0].pk),
        ResponseItem(
            kind="converted",
            occurred_at=NOON + timedelta(days=3),
            idempotency_key="b",
            campaign_id=sent_campaign.pk,
            customer_external_id=control.customer.external_id,
        ),
    ]
    first = responses_record_batch(items=items)
    assert [r.replay for r in first] == [False, False]
    assert [r.response.intervention_id for r in first] == [treated[0].pk, control.pk]
    again = responses_record_batch(items=items)
    assert [r.replay for r in again] == [True, True]
    assert [r.response.pk for r in again] == [r.response.pk for r in first]
    assert Response.objects.count() == 2


def test_a_bad_batch_names_every_bad_item_and_writes_nothing(sent_campaign: Campaign) -> None:
    treated = interventions_of(sent_campaign, "treatment")[0]
    items = [
        opened("a", treated.pk),
        opened("a", treated.pk),
        opened("c", 999999),
        ResponseItem(
            kind="opened",
            occurred_at=LATER,
            idempotency_key="d",
            campaign_id=sent_campaign.pk,
            customer_external_id="nobody",
        ),
    ]
    with pytest.raises(ResponseItemsError) as error:
        responses_record_batch(items=items)
    assert [(e["index"], e["field"]) for e in error.value.errors] == [
        (1, "idempotency_key"),
        (2, "intervention"),
        (3, "customer"),
    ]
    assert not Response.objects.exists()
    too_many = [items[0]] * (MAX_BATCH_ITEMS + 1)
    with pytest.raises(ResponseItemsError, match="1 bad item"):
        responses_record_batch(items=too_many)


def test_delivered_bounced_and_unsubscribed_responses_change_the_intervention_and_consent(
    sent_campaign: Campaign,
) -> None:
    delivered, bounced, unsubscribed = interventions_of(sent_campaign, "treatment")[:3]
    responses_record_batch(
        items=[
            ResponseItem(kind=kind, occurred_at=LATER, idempotency_key=kind, intervention_id=i.pk)
            for kind, i in (
                ("delivered", delivered),
                ("bounced", bounced),
                ("unsubscribed", unsubscribed),
            )
        ]
    )
    delivered.refresh_from_db()
    bounced.refresh_from_db()
    assert delivered.status == "delivered" and delivered.delivered_at == LATER
    assert (bounced.status, bounced.reason) == ("failed", "bounced")
    consent = Consent.objects.get(customer_id=unsubscribed.customer_id)
    assert (consent.channel, consent.status, consent.source) == ("email", "revoked", "response_api")


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def test_a_webhook_signature_must_match_and_be_recent() -> None:
    body, stamp = b'{"events": []}', str(int(NOON.timestamp()))
    good = signature("s3cret", stamp, body)
    assert webhook_signature_valid(
        secret="s3cret", timestamp=stamp, signature=good, body=body, now=NOON
    )
    for secret, sig, now, data in (
        ("other", good, NOON, body),  # wrong secret
        ("s3cret", good, NOON + timedelta(hours=1), body),  # an old capture replayed
        ("s3cret", good, NOON, body + b" "),  # tampered body
        ("", signature("", stamp, body), NOON, body),  # no secret configured
    ):
        assert not webhook_signature_valid(
            secret=secret, timestamp=stamp, signature=sig, body=data, now=now
        )


def test_provider_events_are_counted_and_recorded_once(sent_campaign: Campaign) -> None:
    treated = interventions_of(sent_campaign, "treatment")[0]
    event = {"event": "open", "message_id": f"<intervention-{treated.pk}@x>", "occurred_at": LATER}
    events: list[dict[str, Any]] = [
        {**event, "id": "e1"},
        {**event, "id": "e1"},  # the provider resent it inside one delivery
        {**event, "id": "e2", "event": "processed"},  # acknowledged, not a response
        {**event, "id": "e3", "message_id": "<not-ours@x>"},
        {**event, "message_id": "intervention-999999"},  # looks like ours but is not
    ]
    summary = provider_events_record(channel="email", events=events)
    assert (summary.received, summary.recorded, summary.replayed) == (5, 1, 1)
    assert (summary.ignored, summary.unknown_message) == (1, 2)
    response = Response.objects.get()
    assert response.idempotency_key == "email-webhook-e1" and response.kind == "opened"
    assert provider_events_record(channel="email", events=events[:1]).replayed == 1


def test_a_callback_outcome_closes_the_task_once_and_do_not_call_revokes_consent() -> None:
    agent = User.objects.create_user("agent", is_staff=True)
    customers = make_customers(2)
    Consent.objects.bulk_create(
        [
            Consent(customer=c, channel="call", status="granted", source="t", recorded_at=NOON)
            for c in customers
        ]
    )
    rule = {"name": "call", "channel": "callback", "offer": make_offer()}
    campaign_dispatch(campaign=make_campaign(rules=[rule], control_percentage=0), now=NOON)
    interventions_relay(now=NOON)
    task, other = CallbackTask.objects.order_by("pk")
    response = callback_task_record_outcome(
        task=task, outcome="do_not_call", notes="asked", agent=agent, now=LATER
    )
    again = callback_task_record_outcome(task=task, outcome="do_not_call", notes="asked")
    assert response.pk == again.pk and response.kind == "callback_outcome"
    assert response.payload == {
        "outcome": "do_not_call",
        "agent": "agent",
        "notes": "asked",
        "attempt": 1,
    }
    task.refresh_from_db()
    assert task.status == "done" and task.completed_at is not None
    assert customer_consent_state(customer=task.customer)["call"]["granted"] is False
    callback_task_record_outcome(task=other, outcome="no_answer")
    assert customer_consent_state(customer=other.customer)["call"]["granted"] is True
    with pytest.raises(ValueError, match="unknown outcome"):
        callback_task_record_outcome(task=other, outcome="teleported")


def test_an_unsubscribe_token_revokes_email_consent_and_logs_it_once(
    sent_campaign: Campaign,
) -> None:
    treated = interventions_of(sent_campaign, "treatment")[0]
    token = unsubscribe_token_make(customer_id=treated.customer_id, intervention_id=treated.pk)
    assert customer_unsubscribe(token=token, now=LATER).pk == treated.customer_id
    customer_unsubscribe(token=token, now=LATER)
    assert Consent.objects.get(customer_id=treated.customer_id, channel="email").status == (
        "revoked"
    )
    assert Response.objects.filter(intervention=treated, kind="unsubscribed").count() == 1
    with pytest.raises(signing.BadSignature):
        customer_unsubscribe(token=token[:-2] + "xx")


def test_a_link_without_an_intervention_is_logged_on_the_latest_email_sent(
    sent_campaign: Campaign,
) -> None:
    treated = interventions_of(sent_campaign, "treatment")[0]
    assert Intervention.objects.get(pk=treated.pk).sent_at is not None
    customer_unsubscribe(token=unsubscribe_token_make(customer_id=treated.customer_id))
    assert Response.objects.get(kind="unsubscribed").intervention_id == treated.pk
