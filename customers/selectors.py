"""Reused reads of customer data."""

from __future__ import annotations

from django.conf import settings

from customers.models import Channel, Consent, Customer, Event, Order


def customer_by_external_id(*, external_id: str) -> Customer | None:
    return Customer.objects.filter(external_id=external_id).first()


def customer_consent_state(*, customer: Customer) -> dict[str, dict[str, object]]:
    """Consent per channel: the recorded state, or the configured default when none."""
    recorded = {c.channel: c for c in Consent.objects.filter(customer=customer)}
    state: dict[str, dict[str, object]] = {}
    for channel in Channel.values:
        consent = recorded.get(channel)
        if consent is None:
            granted = settings.CONSENT_DEFAULTS.get(channel, False)
            state[channel] = {"granted": granted, "source": "default", "recorded_at": None}
        else:
            state[channel] = {
                "granted": consent.status == "granted",
                "source": consent.source,
                "recorded_at": consent.recorded_at,
            }
    return state


def customers_totals() -> dict[str, int]:
    return {
        "customers": Customer.objects.count(),
        "orders": Order.objects.count(),
        "events": Event.objects.count(),
        "consents": Consent.objects.count(),
    }


def customer_count() -> int:
    return Customer.objects.count()
