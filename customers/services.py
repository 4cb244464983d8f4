"""Every state change of customers, orders, events, consent and API clients.

Writes are set-based (common.db.bulk); callers pass validated frames from customers.validation.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from operator import or_

import pandas as pd
from auditlog.models import LogEntry
from django.conf import settings
from django.contrib.admin.models import LogEntry as AdminLogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connection, transaction
from django.db.models import F, Func, Q, Value
from django.utils import timezone
from django.utils.crypto import salted_hmac

from common.db.bulk import UpsertCounts, bulk_upsert, ids_for_keys
from customers import versions
from customers.models import (
    PERSONAL_DATA_SCOPES,
    ApiClient,
    ApiScope,
    Channel,
    Consent,
    ConsentStatus,
    Customer,
    Device,
    DeviceStatus,
    Event,
    Order,
)
from customers.privacy import customer_personal_text_erase
from customers.realtime import events_rescore_request, orders_rescore_request


def customers_upsert(*, records: pd.DataFrame) -> UpsertCounts:
    """Create or update customers by external id; attributes are merged key by key.

    The attributes an update replaces are kept with the time they were replaced
    (customers.versions), so features as of an earlier cutoff read them as they were."""
    before = (
        versions.customer_attributes_read(external_ids=records["external_id"].tolist())
        if "attributes" in records and not records.empty
        else None
    )
    counts = bulk_upsert(Customer, records, json_merge=("attributes",))
    if before is not None:
        versions.customer_attribute_versions_record(before=before, valid_until=timezone.now())
    return counts


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
    """Create or update orders by external id (`records` carry customer_id).

    An order whose amount, items or status the file changes (e.g. now refunded) keeps its
    earlier values, valid until now (customers.versions): a refund we learn of today never
    reaches features as of an earlier cutoff. A recent refund asks for its customer's rescore
    once the batch commits (customers.realtime)."""
    before = (
        versions.order_state_read(external_ids=records["external_id"].tolist())
        if not records.empty
        else None
    )
    counts = bulk_upsert(Order, records)
    if before is not None:
        versions.order_versions_record(before=before, valid_until=timezone.now())
    orders_rescore_request(records=records)
    return counts


def events_upsert(*, records: pd.DataFrame) -> UpsertCounts:
    """Create or update events by external id (`records` carry customer_id); a recent event of
    a rescoring kind asks for its customer's rescore once the batch commits."""
    counts = bulk_upsert(Event, records)
    events_rescore_request(records=records)
    return counts


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


ERASED_FIELDS = ("name", "email", "phone", "attributes")


@dataclass(frozen=True)
class CustomerErasure:
    """What one erasure did: the customer (now under its pseudonym) and the rows it changed."""

    customer: Customer
    already_erased: bool  # an earlier erasure had done it all; this one changed nothing
    consents_revoked: int
    events_cleared: int
    cleared: dict[str, int]  # rows of the other apps whose personal text was blanked


def customer_erase(
    *,
    customer: Customer,
    requested_by: str,
    api_client: ApiClient | None = None,
    now: datetime | None = None,
) -> CustomerErasure:
    """Erase one customer's personal data on request (GDPR art. 17), keeping what measurement
    needs: the row, its orders, interventions and responses stay, so every uplift report
    computed before is unchanged.

    Blanks name, email, phone, attributes and its events' properties, revokes consent on every
    channel (a revocation that wins over any earlier statement, whatever its date), marks the
    customer erased (never contacted again), replaces the external id with a stable pseudonym
    and blanks the free text the other apps hold (customers.privacy: intervention details,
    response payloads, callback notes). Running it twice changes nothing more. Each request is
    recorded in the audit log (who asked, when; the pseudonym, never a personal value)."""
    now = now or timezone.now()
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        already = customer.erased and customer.external_id.startswith(ERASED_PREFIX)
        personal = [customer.external_id, customer.name, customer.email, customer.phone]
        if not already:
            customer.external_id = _free_pseudonym(customer)
        customer.name = customer.email = customer.phone = ""
        customer.attributes = {}
        customer.attribute_versions.all().delete()  # earlier attributes are personal data too
        customer.erased = True
        customer.save(update_fields=["external_id", *ERASED_FIELDS, "erased", "updated_at"])
        # Event properties are the client's free-form data; scoring reads kind and time only.
        with_properties = Event.objects.filter(customer=customer).exclude(properties={})
        events = with_properties.update(properties={})
        revoked_before = Consent.objects.filter(customer=customer, status=ConsentStatus.REVOKED)
        revoked = len(set(Channel.values) - set(revoked_before.values_list("channel", flat=True)))
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
        cleared = customer_personal_text_erase(customer=customer)
        # Push tokens reach the person's phone or browser: gone with the rest.
        cleared["devices"] = Device.objects.filter(customer=customer).delete()[0]
        cleared["admin_history"] = _admin_history_erase(
            values=personal, pseudonym=customer.external_id
        )
        erasure = CustomerErasure(customer, already, revoked, events, cleared)
        _erasure_audit(erasure=erasure, requested_by=requested_by, api_client=api_client, now=now)
    return erasure


def _free_pseudonym(customer: Customer) -> str:
    pseudonym = customer_pseudonym(external_id=customer.external_id)
    if Customer.objects.filter(external_id=pseudonym).exclude(pk=customer.pk).exists():
        # The same id erased before, imported again and erased again: a second name.
        pseudonym = customer_pseudonym(external_id=customer.external_id, salt=f"#{customer.pk}")
    return pseudonym


def _admin_history_erase(*, values: list[str], pseudonym: str) -> int:
    """The admin's History names each object as it was shown (a customer by name, a callback as
    "Call Jane Doe (due …)"): each whole-word occurrence of the personal values becomes the
    pseudonym. Change messages list changed field names, never values, so they stay."""
    values = [v for v in values if v and v != pseudonym]
    if not values:
        return 0
    if connection.vendor != "postgresql":  # SQLite has no regexp_replace: Python's re
        word = re.compile("|".join(rf"(?<!\w){re.escape(v)}(?!\w)" for v in values))
        named = AdminLogEntry.objects.filter(
            reduce(or_, (Q(object_repr__contains=v) for v in values))
        )
        changed = []
        for entry in named:
            renamed = word.sub(pseudonym, entry.object_repr)
            if renamed != entry.object_repr:
                entry.object_repr = renamed
                changed.append(entry)
        AdminLogEntry.objects.bulk_update(changed, ["object_repr"])
        return len(changed)
    # PostgreSQL's regex: a value not inside a longer word ("Customer 3" ≠ "Customer 31").
    pattern = "|".join(rf"(?<![[:alnum:]_]){re.escape(v)}(?![[:alnum:]_])" for v in values)
    return AdminLogEntry.objects.filter(object_repr__regex=pattern).update(
        object_repr=Func(
            F("object_repr"),
            Value(pattern),
            Value(pseudonym),
            Value("g"),
            function="regexp_replace",
        )
    )


def _erasure_audit(
    *, erasure: CustomerErasure, requested_by: str, api_client: ApiClient | None, now: datetime
) -> None:
    """One audit log entry (Auditlog > Log entries in the admin) per erasure request, named by
    the pseudonym: who asked (an API client, a command), when, and which kinds of data went."""
    customer = erasure.customer
    LogEntry.objects.create(
        content_type=ContentType.objects.get_for_model(Customer),
        object_pk=str(customer.pk),
        object_id=customer.pk,
        object_repr=customer.external_id,
        action=LogEntry.Action.UPDATE,
        changes_text=f"Personal data erased on request ({requested_by}).",
        changes={} if erasure.already_erased else {"erased": ["False", "True"]},
        timestamp=now,
        additional_data={
            "erasure": {
                "requested_by": requested_by,
                "api_client": api_client.name if api_client else None,
                "api_client_id": api_client.pk if api_client else None,
                "already_erased": erasure.already_erased,
                "fields": list(ERASED_FIELDS),
                "consents_revoked": erasure.consents_revoked,
                "events_cleared": erasure.events_cleared,
                "cleared": erasure.cleared,
            }
        },
    )


API_KEY_PREFIX = "rk"


def api_key_hash(key: str) -> str:
    # Keys are 256-bit random, so a fast hash is enough (no dictionary attack is possible).
    return hashlib.sha256(key.encode()).hexdigest()


def _new_api_key() -> tuple[str, str]:
    """A fresh key and its public prefix (the prefix finds the client, the hash proves it)."""
    prefix = secrets.token_hex(6)
    return prefix, f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"


def api_client_create(*, name: str, scopes: list[str] | None = None) -> tuple[ApiClient, str]:
    """Create an API client and return it with its key; the key is never stored in clear.
    Without `scopes`, every scope but the personal-data ones (erase, export)."""
    if scopes is None:
        scopes = [s.value for s in ApiScope if s.value not in PERSONAL_DATA_SCOPES]
    scopes = list(scopes)
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


# --- devices (push notifications; docs/channels.md) ---------------------------------------------


@dataclass(frozen=True)
class DeviceRegistration:
    device: Device
    created: bool
    retired: int  # the customer's oldest active devices retired to stay within the cap


def device_register(
    *,
    customer: Customer,
    platform: str,
    token: str,
    p256dh: str = "",
    auth: str = "",
    now: datetime | None = None,
) -> DeviceRegistration:
    """Register a device, or refresh the one with this token (idempotent by token): its keys
    and last-seen time are updated and it is active again; a token registered by another
    customer moves to this one (the app was signed into another account). Then the customer's
    active devices beyond settings.PUSH_MAX_DEVICES_PER_CUSTOMER are retired, oldest first
    (by last seen), with the reason recorded."""
    now = now or timezone.now()
    with transaction.atomic():
        device, created = Device.objects.select_for_update().get_or_create(
            token=token,
            defaults={
                "customer": customer,
                "platform": platform,
                "p256dh": p256dh,
                "auth": auth,
                "last_seen_at": now,
            },
        )
        if not created:
            device.customer = customer
            device.platform, device.p256dh, device.auth = platform, p256dh, auth
            device.status = DeviceStatus.ACTIVE
            device.unregistered_reason, device.unregistered_at = "", None
            device.last_seen_at = now
            device.save()
        cap = int(settings.PUSH_MAX_DEVICES_PER_CUSTOMER)
        over = list(
            Device.objects.filter(customer=customer, status=DeviceStatus.ACTIVE)
            .order_by("-last_seen_at", "-pk")
            .values_list("pk", flat=True)[cap:]
        )
        retired = Device.objects.filter(pk__in=over).update(
            status=DeviceStatus.UNREGISTERED,
            unregistered_reason=f"retired: the customer registered more than {cap} devices",
            unregistered_at=now,
        )
    return DeviceRegistration(device=device, created=created, retired=retired)


def device_delete(*, customer: Customer, device_id: int) -> bool:
    """Remove one of the customer's devices (the app signed out); False if it has none such."""
    deleted, _ = Device.objects.filter(customer=customer, pk=device_id).delete()
    return deleted > 0


def devices_unregister(*, device_ids: list[int], reason: str, now: datetime) -> int:
    """Mark devices the push provider called gone (404/410, UNREGISTERED) as unregistered."""
    return Device.objects.filter(pk__in=device_ids, status=DeviceStatus.ACTIVE).update(
        status=DeviceStatus.UNREGISTERED, unregistered_reason=reason[:300], unregistered_at=now
    )
