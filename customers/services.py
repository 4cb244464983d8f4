"""Every state change of customers, orders, events, consent and API clients.

Writes are set-based (common.db.bulk); callers pass validated frames from customers.validation.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import pandas as pd
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from common.db.bulk import UpsertCounts, bulk_upsert, ids_for_keys
from customers.models import (
    ApiClient,
    ApiScope,
    Channel,
    Consent,
    ConsentStatus,
    Customer,
    Event,
    Order,
)


def customers_upsert(*, records: pd.DataFrame) -> UpsertCounts:
    """Create or update customers by external id; attributes are merged key by key."""
    return bulk_upsert(Customer, records, json_merge=("attributes",))


@dataclass(frozen=True)
class LinkedRecords:
    """Records whose `customer` external id was resolved to `customer_id`."""

    linked: pd.DataFrame
    unknown: pd.Index  # row labels whose customer does not exist
    customers_created: int


def records_link_customers(*, records: pd.DataFrame, create_missing: bool) -> LinkedRecords:
    """Resolve the `customer` column (external ids) to customer primary keys.

    With `create_missing`, unknown customers are created with just their external id.
    """
    created = 0
    if create_missing and not records.empty:
        keys = pd.DataFrame({"external_id": pd.unique(records["customer"].astype(str))})
        created = bulk_upsert(Customer, keys, update=False).created
    pks = ids_for_keys(Customer, records["customer"])
    unknown = records.index[pks.isna().to_numpy()]
    linked = records.drop(columns=["customer"]).assign(customer_id=pks.astype("Int64"))
    return LinkedRecords(linked.drop(index=unknown), unknown, created)


def orders_upsert(*, records: pd.DataFrame) -> UpsertCounts:
    """Create or update orders by external id (`records` carry customer_id)."""
    return bulk_upsert(Order, records)


def events_upsert(*, records: pd.DataFrame) -> UpsertCounts:
    """Create or update events by external id (`records` carry customer_id)."""
    return bulk_upsert(Event, records)


def consent_set(
    *,
    customer: Customer,
    channel: str,
    status: str,
    source: str,
    recorded_at: datetime | None = None,
) -> Consent:
    """Record a customer's consent for one channel.

    Statements are ordered by when we received them, not by the time a client claims: a
    claimed `recorded_at` is kept no later than its arrival (callers refuse dates beyond the
    clock-skew allowance), so a future date can never outrank a later statement. A revocation
    always replaces a grant received before it (an unsubscribe is never ignored); otherwise a
    statement claiming an older time than the stored one (a late backfill) changes nothing.
    """
    received_at = timezone.now()
    recorded_at = min(recorded_at or received_at, received_at)
    with transaction.atomic():
        consent, created = Consent.objects.select_for_update().get_or_create(
            customer=customer,
            channel=channel,
            defaults={
                "status": status,
                "source": source,
                "recorded_at": recorded_at,
                "received_at": received_at,
            },
        )
        revokes_grant = status == "revoked" and consent.status == "granted"
        if not created and (revokes_grant or recorded_at >= consent.recorded_at):
            consent.status, consent.source = status, source
            consent.recorded_at, consent.received_at = recorded_at, received_at
            consent.save(
                update_fields=["status", "source", "recorded_at", "received_at", "updated_at"]
            )
    return consent


ERASED_PREFIX = "erased-"


def customer_pseudonym(*, external_id: str, salt: str = "") -> str:
    """`erased-` + 32 hex digits of an HMAC-SHA256 (keyed by SECRET_KEY) of the external id:
    the same id always gives the same pseudonym; nobody without the key can go back to the id."""
    digest = salted_hmac(
        "customers.customer_erase", external_id + salt, algorithm="sha256"
    ).hexdigest()
    return ERASED_PREFIX + digest[:32]


def customer_erase(*, customer: Customer, now: datetime | None = None) -> Customer:
    """Erase one customer's personal data on request (GDPR art. 17), keeping what measurement
    needs: the row, its orders, interventions and responses stay, so every uplift report
    computed before is unchanged.

    Blanks name, email, phone, attributes and its events' properties, revokes consent on every
    channel (a revocation that wins over any earlier statement, whatever its date), marks the
    customer erased (never contacted again) and replaces the external id with a stable
    pseudonym. Running it twice changes nothing more."""
    now = now or timezone.now()
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        if not (customer.erased and customer.external_id.startswith(ERASED_PREFIX)):
            pseudonym = customer_pseudonym(external_id=customer.external_id)
            if Customer.objects.filter(external_id=pseudonym).exclude(pk=customer.pk).exists():
                # The same id erased before, imported again and erased again: a second name.
                pseudonym = customer_pseudonym(
                    external_id=customer.external_id, salt=f"#{customer.pk}"
                )
            customer.external_id = pseudonym
        customer.name = customer.email = customer.phone = ""
        customer.attributes = {}
        customer.erased = True
        customer.save(
            update_fields=[
                "external_id",
                "name",
                "email",
                "phone",
                "attributes",
                "erased",
                "updated_at",
            ]
        )
        # Event properties are the client's free-form data; scoring reads kind and time only.
        Event.objects.filter(customer=customer).exclude(properties={}).update(properties={})
        for channel in Channel.values:
            Consent.objects.update_or_create(
                customer=customer,
                channel=channel,
                defaults={
                    "status": ConsentStatus.REVOKED,
                    "source": "erasure",
                    "recorded_at": now,
                },
            )
    return customer


API_KEY_PREFIX = "rk"


def api_key_hash(key: str) -> str:
    # Keys are 256-bit random, so a fast hash is enough (no dictionary attack is possible).
    return hashlib.sha256(key.encode()).hexdigest()


def _new_api_key() -> tuple[str, str]:
    """A fresh key and its public prefix (the prefix finds the client, the hash proves it)."""
    prefix = secrets.token_hex(6)
    return prefix, f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"


def api_client_create(*, name: str, scopes: list[str] | None = None) -> tuple[ApiClient, str]:
    """Create an API client and return it with its key; the key is never stored in clear."""
    scopes = list(scopes) if scopes is not None else [s.value for s in ApiScope]
    unknown = sorted(set(scopes) - {s.value for s in ApiScope})
    if unknown:
        raise ValueError(f"unknown scope(s): {', '.join(unknown)}")
    prefix, key = _new_api_key()
    client = ApiClient.objects.create(
        name=name, key_prefix=prefix, key_hash=api_key_hash(key), scopes=scopes
    )
    return client, key


def api_client_rotate_key(*, client: ApiClient) -> str:
    """Replace a client's key; the old one stops working at once."""
    prefix, key = _new_api_key()
    client.key_prefix, client.key_hash = prefix, api_key_hash(key)
    client.save(update_fields=["key_prefix", "key_hash"])
    return key
