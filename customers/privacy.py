"""Everything held about one customer, in one place: the export document and the hook through
which the apps above (scoring, campaigns) add their part to the export and to the erasure.

customers sits below scoring and campaigns, so it cannot read their tables. Each of them
registers a `PersonalDataSection` in its AppConfig.ready(): the export composer and
`customers.services.customer_erase` then cover every app without importing any of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from customers.models import Consent, Customer, Device, Event, Order

# The export document's version: bump it when a key is renamed or removed.
EXPORT_FORMAT = 1


@dataclass(frozen=True)
class PersonalDataSection:
    """One app's share of a customer's data.

    `export(customer)` returns the section's rows (plain values; dates and decimals are made
    JSON-safe by the composer). `erase(customer)`, when given, clears the personal free text the
    section holds and returns how many rows it changed; it runs inside the erasure's transaction
    and must keep what measurement reads (ids, arms, statuses, amounts, times)."""

    key: str
    export: Callable[[Customer], list[dict[str, Any]]]
    erase: Callable[[Customer], int] | None = None


_SECTIONS: dict[str, PersonalDataSection] = {}


def personal_data_register(section: PersonalDataSection) -> None:
    """Add (or replace, on a second ready()) one app's section; keys are unique."""
    if section.key in CUSTOMER_KEYS:
        raise ValueError(f"the export key '{section.key}' belongs to the customers app")
    _SECTIONS[section.key] = section


def personal_data_sections() -> tuple[PersonalDataSection, ...]:
    return tuple(_SECTIONS[key] for key in sorted(_SECTIONS))


PROFILE_FIELDS = (
    "external_id",
    "name",
    "email",
    "phone",
    "time_zone",
    "country",
    "signup_date",
    "erased",
    "churn_probability",
    "risk_tier",
    "scored_at",
    "score_model_version",
    "created_at",
    "updated_at",
)
CUSTOMER_KEYS = frozenset({"format", "profile", "attributes", "consents", "orders", "events"})


def customer_export(*, customer: Customer) -> dict[str, Any]:
    """One JSON-safe document with everything held about `customer` (GDPR art. 15 and 20):
    profile, attributes, consent, orders, events, then each registered section (scores,
    interventions, responses, callbacks…). Dates are ISO 8601, amounts decimal strings."""
    document: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "profile": {field: getattr(customer, field) for field in PROFILE_FIELDS},
        "attributes": customer.attributes,
        # One row per channel: the current statement (the service keeps no older ones).
        "consents": list(
            Consent.objects.filter(customer=customer)
            .order_by("channel")
            .values("channel", "status", "recorded_at", "received_at", "source")
        ),
        "orders": list(
            Order.objects.filter(customer=customer)
            .order_by("placed_at", "id")
            .values(
                "external_id",
                "placed_at",
                "amount",
                "currency",
                "status",
                "item_count",
                "discount_amount",
                "category",
            )
        ),
        "events": list(
            Event.objects.filter(customer=customer)
            .order_by("occurred_at", "id")
            .values("external_id", "kind", "occurred_at", "properties")
        ),
        # Push devices (docs/channels.md): the tokens and subscriptions reach the person.
        "devices": list(
            Device.objects.filter(customer=customer)
            .order_by("created_at", "id")
            .values(
                "platform",
                "token",
                "status",
                "unregistered_reason",
                "created_at",
                "last_seen_at",
            )
        ),
    }
    for section in personal_data_sections():
        document[section.key] = section.export(customer)
    result: dict[str, Any] = json.loads(json.dumps(document, cls=DjangoJSONEncoder))
    return result


def customer_personal_text_erase(*, customer: Customer) -> dict[str, int]:
    """Run every registered section's erase (the caller holds the transaction): rows changed
    per section, e.g. {"interventions": 2, "responses": 1}."""
    return {
        section.key: section.erase(customer)
        for section in personal_data_sections()
        if section.erase is not None
    }


def customer_for_privacy_request(*, external_id: str) -> Customer | None:
    """The customer a privacy request names: by its external id or, once erased, by the
    pseudonym that id became (so a repeated erasure or a late export request still finds it)."""
    from customers.services import customer_pseudonym  # services imports this module

    customer = Customer.objects.filter(external_id=external_id).first()
    if customer is None:
        pseudonym = customer_pseudonym(external_id=external_id)
        customer = Customer.objects.filter(external_id=pseudonym, erased=True).first()
    return customer
