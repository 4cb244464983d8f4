"""Every state change that logs how customers responded to campaigns: single responses, batches
from API clients, provider webhook events and unsubscribes (idempotent by key).

A batch is atomic: every item is checked first and one bad item rejects the whole batch with
every bad index named; a replayed item returns the response stored the first time. Coupon
redemptions and callback outcomes, which log a response too, are campaigns.services.coupons
and campaigns.services.callbacks.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

import pandas as pd
from django.conf import settings
from django.core import signing
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Value, When
from django.urls import get_urlconf, reverse
from django.utils import timezone

from campaigns.models import (
    ContactChannel,
    FailureReason,
    Intervention,
    InterventionStatus,
    Response,
    ResponseKind,
)
from campaigns.suppression import CONSENT_FOR_CHANNEL
from customers.models import ApiClient, Customer
from customers.services import consent_set

# Most items one request may carry; the same bound as the ingestion API (settings).
MAX_BATCH_ITEMS = 1000


def response_record(
    *,
    intervention: Intervention,
    kind: str,
    occurred_at: datetime,
    idempotency_key: str,
    revenue: Decimal | None = None,
    order_external_id: str = "",
    payload: dict[str, Any] | None = None,
) -> tuple[Response, bool]:
    """Log a response once per idempotency key; a replay returns the original (created False)."""
    try:
        with transaction.atomic():
            response = Response.objects.create(
                intervention=intervention,
                kind=kind,
                occurred_at=occurred_at,
                idempotency_key=idempotency_key,
                revenue=revenue,
                order_external_id=order_external_id,
                payload=payload or {},
            )
        return response, True
    except IntegrityError:
        return Response.objects.get(client=None, idempotency_key=idempotency_key), False


@dataclass(frozen=True)
class ResponseItem:
    """One response to log, already type-checked by the API's input serializer."""

    kind: str
    occurred_at: datetime
    idempotency_key: str
    intervention_id: int | None = None
    campaign_id: int | None = None
    customer_external_id: str = ""
    revenue: Decimal | None = None
    order_external_id: str = ""
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResponseRow:
    """A response the fast path just inserted: the fields a caller reads, without building a
    model instance per item (a bulk request's hottest loop)."""

    id: int
    intervention_id: int
    kind: str
    occurred_at: datetime
    revenue: Decimal | None
    order_external_id: str
    idempotency_key: str
    created_at: datetime
    payload: dict[str, Any]

    @property
    def pk(self) -> int:
        return self.id


@dataclass(frozen=True)
class ResponseResult:
    response: Response | ResponseRow
    replay: bool


class ResponseItemsError(Exception):
    """Some items cannot be recorded; nothing was written. `errors`: [{index, field, message}]."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} bad item(s)")
        self.errors = errors


class IdempotencyConflictError(ResponseItemsError):
    """An API client reused an idempotency key with different content; nothing was written."""


def _replay_differences(item: ResponseItem, response: Response) -> list[str]:
    """The fields in which a replayed item differs from the response its key stored."""
    intervention = response.intervention
    if item.intervention_id is not None:
        same_target = item.intervention_id == intervention.pk
    else:
        same_target = (item.campaign_id, item.customer_external_id) == (
            intervention.campaign_id,
            intervention.customer.external_id,
        )
    checks = {
        "intervention": same_target,
        "kind": item.kind == response.kind,
        "occurred_at": item.occurred_at == response.occurred_at,
        "revenue": item.revenue == response.revenue,
        "order_external_id": item.order_external_id == response.order_external_id,
        "payload": (item.payload or {}) == (response.payload or {}),
    }
    return [name for name, same in checks.items() if not same]


def _replay_conflicts(
    items: Sequence[ResponseItem], existing: dict[str, Response]
) -> list[dict[str, Any]]:
    conflicts = []
    for position, item in enumerate(items):
        stored = existing.get(item.idempotency_key)
        differs = _replay_differences(item, stored) if stored is not None else []
        if differs:
            conflicts.append(
                {
                    "index": position,
                    "field": "idempotency_key",
                    "message": f"key '{item.idempotency_key}' was already used with a different "
                    f"body (differs in: {', '.join(differs)}); use a new key for new content",
                }
            )
    return conflicts


def _resolve_interventions(
    items: Sequence[ResponseItem], positions: Sequence[int]
) -> tuple[dict[int, int], list[dict[str, Any]]]:
    """{position: intervention id} for the given item positions, plus an error per item whose
    intervention is unknown. By campaign + customer, the customer's latest intervention in that
    campaign assigned at or before the response (else their earliest) is taken."""
    found: dict[int, int] = {}
    errors: list[dict[str, Any]] = []
    by_id = {p: items[p].intervention_id for p in positions if items[p].intervention_id}
    known = set(
        Intervention.objects.filter(pk__in=set(by_id.values())).values_list("pk", flat=True)
    )
    for position, intervention_id in by_id.items():
        if intervention_id in known:
            found[position] = int(intervention_id)
        else:
            errors.append(
                {
                    "index": position,
                    "field": "intervention",
                    "message": f"unknown intervention {intervention_id}",
                }
            )
    pairs = [p for p in positions if p not in by_id]
    if pairs:
        rows = pd.DataFrame.from_records(
            list(
                Intervention.objects.filter(
                    campaign_id__in={items[p].campaign_id for p in pairs},
                    customer__external_id__in={items[p].customer_external_id for p in pairs},
                ).values_list("pk", "campaign_id", "customer__external_id", "created_at")
            ),
            columns=["id", "campaign_id", "customer", "created_at"],
        )
        for position in pairs:
            item = items[position]
            mine = rows.loc[
                rows["campaign_id"].eq(item.campaign_id)
                & rows["customer"].eq(item.customer_external_id)
            ].sort_values("created_at")
            if mine.empty:
                errors.append(
                    {
                        "index": position,
                        "field": "customer",
                        "message": f"customer '{item.customer_external_id}' has no intervention "
                        f"in campaign {item.campaign_id}",
                    }
                )
                continue
            before = mine.loc[mine["created_at"] <= item.occurred_at]
            found[position] = int((before if not before.empty else mine)["id"].iloc[-1])
    return found, errors


def _apply_side_effects(responses: Sequence[Response | ResponseRow]) -> None:
    """What a newly logged response changes: delivery state, bounces, consent."""
    delivered = {r.intervention_id: r.occurred_at for r in responses if r.kind == "delivered"}
    if delivered:
        Intervention.objects.filter(pk__in=list(delivered), status=InterventionStatus.SENT).update(
            status=InterventionStatus.DELIVERED,
            delivered_at=Case(*[When(pk=k, then=Value(v)) for k, v in delivered.items()]),
            updated_at=timezone.now(),
        )
    bounced = [r.intervention_id for r in responses if r.kind == ResponseKind.BOUNCED]
    if bounced:
        Intervention.objects.filter(
            pk__in=bounced, status__in=[InterventionStatus.SENT, InterventionStatus.DELIVERED]
        ).update(
            status=InterventionStatus.FAILED,
            reason=FailureReason.BOUNCED,
            detail="bounced or undelivered (provider report)",
            updated_at=timezone.now(),
        )
    unsubscribed = [r for r in responses if r.kind == ResponseKind.UNSUBSCRIBED]
    if unsubscribed:
        rows = Intervention.objects.filter(pk__in=[r.intervention_id for r in unsubscribed])
        channel_of = dict(rows.values_list("pk", "channel"))
        customer_of = dict(rows.values_list("pk", "customer_id"))
        customers = Customer.objects.in_bulk(set(customer_of.values()))
        for response in unsubscribed:  # rare: one consent statement per unsubscribe
            consent = CONSENT_FOR_CHANNEL.get(channel_of[response.intervention_id])
            if consent:
                consent_set(
                    customer=customers[customer_of[response.intervention_id]],
                    channel=consent,
                    status="revoked",
                    source="response_api",
                    recorded_at=response.occurred_at,
                )


class _NotAllNew(Exception):
    """The fast path met a case it leaves to the general one; its insert is rolled back."""


_RESPONSE_COLUMNS = (
    "intervention_id",
    "kind",
    "occurred_at",
    "revenue",
    "order_external_id",
    "idempotency_key",
    "client_id",
    "payload",
    "created_at",
)  # the order both INSERTs below write them in


def _record_new_by_id(
    *, items: Sequence[ResponseItem], client: ApiClient | None
) -> list[ResponseResult] | None:
    """The common case in one statement: every item names its intervention by id, and every key
    is new. One INSERT … ON CONFLICT DO NOTHING RETURNING writes the batch (on SQLite after one
    SELECT that checks the interventions). If an intervention is unknown, a key repeats inside
    the batch, or a key already existed (a replay, or a concurrent request's: its row is not
    returned), nothing is kept (the insert is rolled back) and None is returned: the general
    path below — which names every bad item, returns replays and refuses conflicts — decides."""
    if not items or any(item.intervention_id is None for item in items):
        return None
    if len({item.idempotency_key for item in items}) != len(items):
        return None
    postgres = connection.vendor == "postgresql"
    if not postgres:  # PostgreSQL's INSERT joins the interventions instead (below)
        wanted = list({int(item.intervention_id or 0) for item in items})
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*) FROM {Intervention._meta.db_table} "
                f"WHERE id IN ({', '.join(['%s'] * len(wanted))})",
                wanted,
            )
            (known,) = cursor.fetchone()
        if known != len(wanted):
            return None
    now = timezone.now()
    client_id = client.pk if client is not None else None
    sql, params = (_insert_postgres if postgres else _insert_portable)(items, client_id, now)
    side_effects = any(item.kind in _SIDE_EFFECT_KINDS for item in items)
    # One item without side effects, outside any transaction, is one statement: written whole or
    # not at all, so it needs no transaction of its own (two round trips fewer per response).
    alone = len(items) == 1 and not side_effects and not connection.in_atomic_block
    atomic: AbstractContextManager[Any] = nullcontext() if alone else transaction.atomic()
    try:
        with atomic:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                ids = dict((key, pk) for pk, key in cursor.fetchall())
            if len(ids) != len(items):
                raise _NotAllNew
            rows = [
                ResponseRow(
                    id=ids[item.idempotency_key],
                    intervention_id=int(item.intervention_id or 0),
                    kind=item.kind,
                    occurred_at=item.occurred_at,
                    revenue=item.revenue,
                    order_external_id=item.order_external_id,
                    idempotency_key=item.idempotency_key,
                    created_at=now,
                    payload=item.payload,
                )
                for item in items
            ]
            if side_effects:
                _apply_side_effects(rows)
    except (_NotAllNew, IntegrityError):
        return None
    return [ResponseResult(response=row, replay=False) for row in rows]


def _insert_postgres(
    items: Sequence[ResponseItem], client_id: int | None, now: datetime
) -> tuple[str, list[Any]]:
    """One INSERT from column arrays (unnest): nine parameters whatever the batch size, so the
    statement text is the same for every batch and nothing is spelt out per item. The join
    skips an item whose intervention does not exist: its row is not returned, which sends the
    batch to the general path like a replayed key (no separate check query)."""
    payloads = [json.dumps(item.payload) if item.payload else "{}" for item in items]
    sql = (
        f"INSERT INTO {Response._meta.db_table} ({', '.join(_RESPONSE_COLUMNS)}) "
        "SELECT u.intervention_id, u.kind, u.occurred_at, u.revenue, u.order_external_id, "
        "u.idempotency_key, %s::bigint, u.payload::jsonb, %s::timestamptz "
        "FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::numeric[], %s::text[], "
        "%s::text[], %s::text[]) AS u(intervention_id, kind, occurred_at, revenue, "
        "order_external_id, idempotency_key, payload) "
        f"JOIN {Intervention._meta.db_table} i ON i.id = u.intervention_id "
        "ON CONFLICT DO NOTHING RETURNING id, idempotency_key"
    )
    params = [
        client_id,
        now,
        [item.intervention_id for item in items],
        [str(item.kind) for item in items],
        [item.occurred_at for item in items],
        [item.revenue for item in items],
        [item.order_external_id for item in items],
        [item.idempotency_key for item in items],
        payloads,
    ]
    return sql, params


def _insert_portable(
    items: Sequence[ResponseItem], client_id: int | None, now: datetime
) -> tuple[str, list[Any]]:
    """The same INSERT spelt out row by row (SQLite, the embedded demo database)."""
    ops = connection.ops
    payload_field = Response._meta.get_field("payload")
    created_at = ops.adapt_datetimefield_value(now)
    params: list[Any] = []
    for item in items:
        params += (
            item.intervention_id,
            item.kind,
            ops.adapt_datetimefield_value(item.occurred_at),
            None if item.revenue is None else ops.adapt_decimalfield_value(item.revenue, 12, 2),
            item.order_external_id,
            item.idempotency_key,
            client_id,
            payload_field.get_db_prep_save(item.payload, connection),
            created_at,
        )
    row = "(" + ", ".join(["%s"] * len(_RESPONSE_COLUMNS)) + ")"
    sql = (
        f"INSERT INTO {Response._meta.db_table} ({', '.join(_RESPONSE_COLUMNS)}) "
        f"VALUES {', '.join([row] * len(items))} "
        "ON CONFLICT DO NOTHING RETURNING id, idempotency_key"
    )
    return sql, params


# The kinds _apply_side_effects acts on; every other kind is only logged.
_SIDE_EFFECT_KINDS = frozenset(
    {ResponseKind.DELIVERED, ResponseKind.BOUNCED, ResponseKind.UNSUBSCRIBED}
)


def responses_record_batch(
    *, items: Sequence[ResponseItem], client: ApiClient | None = None
) -> list[ResponseResult]:
    """Log a batch of responses atomically, in item order. Keys are scoped to `client` (None:
    internal callers such as webhooks). An item whose key was already used returns that
    original response (replay=True) and changes nothing. Raises ResponseItemsError naming every
    bad item (unknown intervention, key repeated in the batch) before anything is written, and
    for a client IdempotencyConflictError when a key comes back with different content
    (a provider's webhook resend may differ in details, so internal replays are not compared)."""
    if len(items) > MAX_BATCH_ITEMS:
        raise ResponseItemsError([{"field": "", "message": f"at most {MAX_BATCH_ITEMS} items"}])
    fast = _record_new_by_id(items=items, client=client)
    if fast is not None:
        return fast
    errors: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for position, item in enumerate(items):
        if item.idempotency_key in seen:
            errors.append(
                {
                    "index": position,
                    "field": "idempotency_key",
                    "message": f"repeats item {seen[item.idempotency_key]}'s key in this request",
                }
            )
        seen.setdefault(item.idempotency_key, position)
    for _attempt in range(2):  # a concurrent request may take a key between check and insert
        existing = {
            r.idempotency_key: r
            for r in Response.objects.filter(
                client=client, idempotency_key__in=list(seen)
            ).select_related("intervention__customer")
        }
        new = [p for p, item in enumerate(items) if item.idempotency_key not in existing]
        resolved, unknown = _resolve_interventions(items, new)
        if errors or unknown:
            raise ResponseItemsError(sorted(errors + unknown, key=lambda e: e["index"]))
        conflicts = _replay_conflicts(items, existing) if client is not None else []
        if conflicts:
            raise IdempotencyConflictError(conflicts)
        rows = [
            Response(
                client=client,
                intervention_id=resolved[p],
                kind=items[p].kind,
                occurred_at=items[p].occurred_at,
                idempotency_key=items[p].idempotency_key,
                revenue=items[p].revenue,
                order_external_id=items[p].order_external_id,
                payload=items[p].payload,
            )
            for p in new
        ]
        try:
            with transaction.atomic():
                created = Response.objects.bulk_create(rows)
                _apply_side_effects(created)
        except IntegrityError:
            continue
        by_key = {r.idempotency_key: r for r in created}
        return [
            ResponseResult(
                response=existing.get(item.idempotency_key) or by_key[item.idempotency_key],
                replay=item.idempotency_key in existing,
            )
            for item in items
        ]
    raise ResponseItemsError([{"field": "", "message": "conflicting concurrent request; retry"}])


# --- provider webhooks -------------------------------------------------------------------------

# Provider event names → response kinds (None: acknowledged and ignored, e.g. "sent", "queued").
EMAIL_EVENTS: dict[str, str | None] = {
    "delivered": ResponseKind.DELIVERED,
    "delivery": ResponseKind.DELIVERED,
    "open": ResponseKind.OPENED,
    "opened": ResponseKind.OPENED,
    "click": ResponseKind.CLICKED,
    "clicked": ResponseKind.CLICKED,
    "bounce": ResponseKind.BOUNCED,
    "bounced": ResponseKind.BOUNCED,
    "dropped": ResponseKind.BOUNCED,
    "unsubscribe": ResponseKind.UNSUBSCRIBED,
    "unsubscribed": ResponseKind.UNSUBSCRIBED,
    "spamreport": ResponseKind.UNSUBSCRIBED,
    "complaint": ResponseKind.UNSUBSCRIBED,
    "processed": None,
    "sent": None,
    "deferred": None,
}
SMS_EVENTS: dict[str, str | None] = {
    "delivered": ResponseKind.DELIVERED,
    "undelivered": ResponseKind.BOUNCED,
    "failed": ResponseKind.BOUNCED,
    "replied": ResponseKind.REPLIED,
    "reply": ResponseKind.REPLIED,
    "stop": ResponseKind.UNSUBSCRIBED,
    "unsubscribed": ResponseKind.UNSUBSCRIBED,
    "queued": None,
    "sending": None,
    "sent": None,
    "accepted": None,
}
WEBHOOK_EVENTS = {"email": EMAIL_EVENTS, "sms": SMS_EVENTS}
_OUR_ID = re.compile(r"intervention-(\d+)")


def webhook_signature_valid(
    *, secret: str, timestamp: str, signature: str, body: bytes, now: datetime
) -> bool:
    """`signature` is `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` and the Unix
    `timestamp` is within WEBHOOK_TOLERANCE_SECONDS of now (no replay of old captures)."""
    if not secret or not timestamp.isdigit():
        return False
    if abs(now.timestamp() - int(timestamp)) > settings.WEBHOOK_TOLERANCE_SECONDS:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest("sha256=" + expected.hexdigest(), signature.strip())


@dataclass(frozen=True)
class WebhookSummary:
    received: int
    recorded: int
    replayed: int
    ignored: int
    unknown_message: int


def provider_events_record(*, channel: str, events: Sequence[dict[str, Any]]) -> WebhookSummary:
    """Log a provider's delivery events (validated dicts: id, event, message_id, occurred_at).
    Events naming a message we never sent are counted, not errors: the provider must not retry
    them forever. The provider's event id (else message + event + time) is the idempotency key."""
    names = WEBHOOK_EVENTS[channel]
    wanted = [e for e in events if names.get(str(e["event"]).lower())]
    message_ids = {str(e["message_id"]) for e in wanted}
    ours = {m: int(match.group(1)) for m in message_ids if (match := _OUR_ID.search(m))}
    by_provider = dict(
        Intervention.objects.filter(
            provider_message_id__in=message_ids - set(ours), channel=channel
        ).values_list("provider_message_id", "pk")
    )
    existing = set(
        Intervention.objects.filter(pk__in=set(ours.values()), channel=channel).values_list(
            "pk", flat=True
        )
    )
    items: list[ResponseItem] = []
    unknown = 0
    for event in wanted:
        message = str(event["message_id"])
        intervention_id = ours.get(message) or by_provider.get(message)
        if intervention_id is None or (message in ours and intervention_id not in existing):
            unknown += 1
            continue
        occurred: datetime = event["occurred_at"]
        key = (
            event.get("id")
            or hashlib.sha256(
                f"{message}|{event['event']}|{occurred.isoformat()}".encode()
            ).hexdigest()[:40]
        )
        items.append(
            ResponseItem(
                kind=str(names[str(event["event"]).lower()]),
                occurred_at=occurred,
                idempotency_key=f"{channel}-webhook-{key}"[:200],
                intervention_id=intervention_id,
                payload={"provider_event": str(event["event"]), "message_id": message},
            )
        )
    # Providers resend the same event: collapse repeats inside one delivery to one item.
    unique = list({item.idempotency_key: item for item in items}.values())
    results = responses_record_batch(items=unique) if unique else []
    replayed = sum(r.replay for r in results)
    return WebhookSummary(
        received=len(events),
        recorded=len(results) - replayed,
        replayed=replayed + len(items) - len(unique),
        ignored=len(events) - len(wanted),
        unknown_message=unknown,
    )


# --- unsubscribe: the signed link of campaign messages and what clicking it does ---------------

# Signs the unsubscribe tokens; changing it invalidates every link already sent.
UNSUBSCRIBE_SALT = "campaigns.unsubscribe"


def unsubscribe_token_make(*, customer_id: int, intervention_id: int | None = None) -> str:
    return signing.dumps({"c": customer_id, "i": intervention_id}, salt=UNSUBSCRIBE_SALT)


def unsubscribe_url(*, customer_id: int, intervention_id: int | None = None) -> str:
    """The public one-click link that revokes the customer's email consent."""
    token = unsubscribe_token_make(customer_id=customer_id, intervention_id=intervention_id)
    return settings.PUBLIC_BASE_URL + _unsubscribe_path(get_urlconf()).replace(_TOKEN, token)


_TOKEN = "TOKEN-PLACEHOLDER"


@cache
def _unsubscribe_path(urlconf: str | None) -> str:
    """The link's path with a placeholder for the token, reversed once per URLconf (a reverse
    per message cost the relay 5% of its time). Tokens are URL-safe: the path takes them as is."""
    return reverse("campaigns-unsubscribe", args=[_TOKEN], urlconf=urlconf)


def customer_unsubscribe(*, token: str, now: datetime | None = None) -> Customer:
    """Revoke email consent for the customer a signed unsubscribe token names (one click).
    Raises signing.BadSignature for a forged or damaged token."""
    data = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    now = now or timezone.now()
    customer = Customer.objects.get(pk=int(data["c"]))
    consent_set(
        customer=customer,
        channel="email",
        status="revoked",
        source="unsubscribe_link",
        recorded_at=now,
    )
    intervention = Intervention.objects.filter(pk=data.get("i"), customer=customer).first()
    if intervention is None:
        # A link without an intervention (e.g. a footer): log it on the latest email sent.
        intervention = (
            Intervention.objects.filter(customer=customer, channel=ContactChannel.EMAIL)
            .exclude(sent_at__isnull=True)
            .order_by("-sent_at")
            .first()
        )
    if intervention is not None:
        response_record(
            intervention=intervention,
            kind=ResponseKind.UNSUBSCRIBED,
            occurred_at=now,
            idempotency_key=f"unsubscribe-{intervention.pk}",
        )
    return customer
