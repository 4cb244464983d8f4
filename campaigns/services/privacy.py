"""Erasure of the personal free text campaign rows hold (registered with customers.privacy).

Only text goes: arms, statuses, reasons, amounts, times and links stay, so every uplift report
computed before an erasure is computed the same after it. Coupon codes stay on the coupons:
they are random, identify nobody, and the redemptions the reports count hang on them."""

from __future__ import annotations

from campaigns.models import CallbackTask, InboxMessage, Intervention, Response
from customers.models import Customer


def customer_interventions_detail_erase(customer: Customer) -> int:
    """Blank the delivery details (a provider's error can quote the address or the number) and
    delete the customer's in-app messages (their rendered text names them)."""
    inbox = InboxMessage.objects.filter(customer=customer).delete()[0]
    return inbox + Intervention.objects.filter(customer=customer).exclude(detail="").update(
        detail=""
    )


def customer_responses_payload_erase(customer: Customer) -> int:
    """Empty the response payloads: a client's free-form JSON, an agent's notes."""
    rows = Response.objects.filter(intervention__customer=customer).exclude(payload={})
    return rows.update(payload={})


def customer_callbacks_notes_erase(customer: Customer) -> int:
    """Blank the agents' notes of the customer's callbacks (their own words about the call)."""
    return CallbackTask.objects.filter(customer=customer).exclude(notes="").update(notes="")
