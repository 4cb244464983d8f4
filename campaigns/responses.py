"""Every state change that logs how customers responded to campaigns: batches of responses from
API clients, coupon redemptions and provider webhook events (all idempotent by key).

A batch is atomic: every item is checked first and one bad item rejects the whole batch with
every bad index named; a replayed item returns the response stored the first time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pandas as pd
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, Value, When
from django.utils import timezone

from campaigns import selectors
from campaigns.models import (
    CONSENT_FOR_CHANNEL,
    Coupon,
    FailureReason,
    Intervention,
    InterventionStatus,
    OfferKind,
    Response,
    ResponseKind,
)
from campaigns.services import response_record
from customers.models import Customer, Order
from customers.services import consent_set

# Most items one request may carry; the same bound as the ingestion API (settings).
MAX_BATCH_ITEMS = 1000
CENT = Decimal("0.01")


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


@dataclass(frozen=True)
class ResponseResult:
    response: Response
    replay: bool


class ResponseItemsError(Exception):
    """Some items cannot be recorded; nothing was written. `errors`: [{index, field, message}]."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(errors)} bad item(s)")
        self.errors = errors


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


def _apply_side_effects(responses: Sequence[Response]) -> None:
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


def responses_record_batch(*, items: Sequence[ResponseItem]) -> list[ResponseResult]:
    """Log a batch of responses atomically, in item order. An item whose idempotency key was
    already used returns that original response (replay=True) and changes nothing. Raises
    ResponseItemsError naming every bad item (unknown intervention, key repeated in the batch)
    before anything is written."""
    if len(items) > MAX_BATCH_ITEMS:
        raise ResponseItemsError(
            [{"index": None, "field": None, "message": f"at most {MAX_BATCH_ITEMS} items"}]
        )
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
        existing = Response.objects.in_bulk(list(seen), field_name="idempotency_key")
        new = [p for p, item in enumerate(items) if item.idempotency_key not in existing]
        resolved, unknown = _resolve_interventions(items, new)
        if errors or unknown:
            raise ResponseItemsError(sorted(errors + unknown, key=lambda e: e["index"]))
        rows = [
            Response(
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
    raise ResponseItemsError(
        [{"index": None, "field": None, "message": "conflicting concurrent request; retry"}]
    )


# --- coupons ---------------------------------------------------------------------------------


class CouponRedeemError(Exception):
    """A coupon cannot be redeemed: `code` is not_found (404), coupon_expired or
    coupon_already_redeemed (409)."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class Redemption:
    coupon: Coupon
    response: Response | None  # None for a coupon issued outside any campaign
    replay: bool


def coupon_discount(*, coupon: Coupon, amount: Decimal) -> Decimal:
    """What redeeming the coupon on an order of `amount` costs: the discount granted.
    Percent: that share of the amount; amount-off: at most the amount; free shipping (and any
    other kind): the offer's expected unit cost."""
    if coupon.kind == OfferKind.PERCENT_COUPON:
        discount = amount * Decimal(coupon.value) / 100
    elif coupon.kind == OfferKind.AMOUNT_COUPON:
        discount = min(Decimal(coupon.value), amount)
    else:
        discount = Decimal(coupon.offer.unit_cost)
    return discount.quantize(CENT, rounding=ROUND_HALF_UP)


def coupon_redeem(
    *,
    code: str,
    order_external_id: str,
    amount: Decimal,
    redeemed_at: datetime | None = None,
) -> Redemption:
    """Redeem a coupon once, for one order. The same order again is a replay (the original
    result); another order, an expired or an unknown code raise CouponRedeemError. The
    redemption is logged as a `redeemed` response of the coupon's intervention."""
    redeemed_at = redeemed_at or timezone.now()
    coupon = selectors.coupon_by_code(code=code)
    if coupon is None:
        raise CouponRedeemError("not_found", "No coupon has this code.", 404)
    with transaction.atomic():
        won = Coupon.objects.filter(pk=coupon.pk, redeemed_at__isnull=True).exists() and (
            redeemed_at <= coupon.expires_at
        )
        if won:
            discount = coupon_discount(coupon=coupon, amount=amount)
            order = Order.objects.filter(external_id=order_external_id).first()
            # Compare-and-set: of two concurrent redemptions exactly one updates the row.
            won = bool(
                Coupon.objects.filter(pk=coupon.pk, redeemed_at__isnull=True).update(
                    redeemed_at=redeemed_at,
                    redeemed_order=order,
                    redeemed_order_external_id=order_external_id,
                    redeemed_amount=amount,
                    redeemed_discount=discount,
                )
            )
        coupon.refresh_from_db()
        if not won:
            if coupon.redeemed_at is not None:
                if coupon.redeemed_order_external_id == order_external_id:
                    response = _redemption_response(coupon)
                    return Redemption(coupon=coupon, response=response, replay=True)
                raise CouponRedeemError(
                    "coupon_already_redeemed",
                    f"This coupon was already redeemed on {coupon.redeemed_at:%Y-%m-%d %H:%M} "
                    "UTC for another order.",
                    409,
                )
            raise CouponRedeemError(
                "coupon_expired",
                f"This coupon expired on {coupon.expires_at:%Y-%m-%d %H:%M} UTC.",
                409,
            )
        response = None
        if coupon.intervention_id:
            response, _ = response_record(
                intervention=coupon.intervention,  # type: ignore[arg-type]
                kind=ResponseKind.REDEEMED,
                occurred_at=redeemed_at,
                idempotency_key=f"coupon-{coupon.pk}-redeemed",
                revenue=amount,
                order_external_id=order_external_id,
                payload={"code": coupon.code, "discount": str(coupon.redeemed_discount)},
            )
    return Redemption(coupon=coupon, response=response, replay=False)


def _redemption_response(coupon: Coupon) -> Response | None:
    return Response.objects.filter(idempotency_key=f"coupon-{coupon.pk}-redeemed").first()


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

    def to_dict(self) -> dict[str, int]:
        return {
            "received": self.received,
            "recorded": self.recorded,
            "replayed": self.replayed,
            "ignored": self.ignored,
            "unknown_message": self.unknown_message,
        }


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


__all__ = [
    "CouponRedeemError",
    "Redemption",
    "ResponseItem",
    "ResponseItemsError",
    "ResponseResult",
    "WebhookSummary",
    "coupon_discount",
    "coupon_redeem",
    "provider_events_record",
    "responses_record_batch",
    "webhook_signature_valid",
]
