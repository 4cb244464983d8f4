"""The in-app inbox: what the shop's app fetches, and the customer's reads and dismissals.

A message is `sent` when the relay puts it in the inbox (campaigns.channels.inapp) and
`delivered` the first time the app fetches it (a `delivered` response, logged once per message).
Reading or dismissing logs an `opened` / `dismissed` response once per message: a replay (the
same request again, or a second read of a message already read) logs nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet

from campaigns.models import InboxMessage, Response, ResponseKind
from campaigns.services.responses import ResponseItem, responses_record_batch
from customers.models import ApiClient, Customer

INBOX_ACTIONS = {"read": ResponseKind.OPENED, "dismiss": ResponseKind.DISMISSED}


def _open_messages(customer: Customer, now: datetime) -> QuerySet[InboxMessage]:
    return InboxMessage.objects.filter(
        customer=customer,
        expires_at__gt=now,
        read_at__isnull=True,
        dismissed_at__isnull=True,
    ).order_by("-created_at", "-pk")


def inbox_fetch(*, customer: Customer, now: datetime) -> list[InboxMessage]:
    """The customer's unread, undismissed, unexpired in-app messages, newest first. Those the
    app had never fetched are now delivered (fetched_at set, one `delivered` response each)."""
    with transaction.atomic():
        messages = list(_open_messages(customer, now).select_for_update())
        first = [m for m in messages if m.fetched_at is None]
        if first:
            InboxMessage.objects.filter(pk__in=[m.pk for m in first]).update(fetched_at=now)
            responses_record_batch(
                items=[
                    ResponseItem(
                        kind=ResponseKind.DELIVERED,
                        occurred_at=now,
                        idempotency_key=f"in_app-delivered-{m.intervention_id}",
                        intervention_id=m.intervention_id,
                        payload={"source": "in_app_fetch"},
                    )
                    for m in first
                ]
            )
            for message in first:
                message.fetched_at = now
    return messages


class InboxMessageNotFoundError(Exception):
    """The customer has no in-app message with this id."""


@dataclass(frozen=True)
class InboxAction:
    message: InboxMessage
    response_id: int | None
    replay: bool


def inbox_message_act(
    *,
    customer: Customer,
    message_id: int,
    action: str,
    now: datetime,
    idempotency_key: str = "",
    client: ApiClient | None = None,
) -> InboxAction:
    """Mark one message read or dismissed and log the response (`opened` / `dismissed`) once.
    The key defaults to one per message and action, so a retried request without a key is a
    replay too; a client's own key is scoped to that client."""
    kind = INBOX_ACTIONS[action]
    field = "read_at" if action == "read" else "dismissed_at"
    with transaction.atomic():
        message = (
            InboxMessage.objects.select_for_update()
            .filter(customer=customer, pk=message_id)
            .first()
        )
        if message is None:
            raise InboxMessageNotFoundError(f"customer has no in-app message {message_id}")
        if getattr(message, field) is not None:
            # Already read (dismissed): a replay, whatever key it comes with.
            first = (
                Response.objects.filter(intervention_id=message.intervention_id, kind=kind)
                .order_by("pk")
                .values_list("pk", flat=True)
                .first()
            )
            return InboxAction(message, first, True)
        results = responses_record_batch(
            items=[
                ResponseItem(
                    kind=kind,
                    occurred_at=now,
                    idempotency_key=idempotency_key or f"in_app-{action}-{message.pk}",
                    intervention_id=message.intervention_id,
                    payload={"source": "in_app"},
                )
            ],
            client=client if idempotency_key else None,
        )
        setattr(message, field, now)
        message.save(update_fields=[field])
    return InboxAction(message, results[0].response.pk, results[0].replay)
