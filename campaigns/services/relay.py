"""The relay: deliver the outbox (treatment interventions `pending`/`scheduled`) through the
channels, at most once per intervention, and build the message each intervention sends.

Claims are leases (SKIP LOCKED on PostgreSQL) and every send passes a compare-and-set from
`pending` to `sending`, so duplicated or retried relays never send a message twice.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from campaigns.channels.base import (
    ChannelBackend,
    OutboundMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from campaigns.channels.registry import channel_backend
from campaigns.models import (
    Arm,
    ContactChannel,
    Coupon,
    FailureReason,
    Intervention,
    InterventionStatus,
    MessageTemplate,
    SuppressionReason,
)
from campaigns.rendering import (
    CHANNELS_WITH_SUBJECT,
    message_context,
    message_render,
    product_context,
)
from campaigns.services.rate import relay_rate_return, relay_rate_take
from campaigns.services.responses import unsubscribe_url
from campaigns.suppression import consent_columns, consent_for_channel
from customers.models import Consent, Device, DeviceStatus
from scoring.selectors import customer_latest_reasons, customer_recommended_products

logger = logging.getLogger(__name__)

# Interventions claimed by the relay per transaction: small enough that a worker lost mid-chunk
# strands little (its rows wait out RELAY_LEASE), large enough to amortise the claim query.
RELAY_CHUNK = 200
# A claimed chunk is the claimant's for this long after its claim or its latest renewal; the
# relay renews the lease on the rows it has not reached yet every RELAY_LEASE_RENEW. Trade-off:
# a worker killed mid-chunk holds its rows back at most RELAY_LEASE (not the time a whole chunk
# would take), at the cost of one UPDATE per renewal; the lease must exceed RELAY_LEASE_RENEW
# plus the longest single send (SMTP timeouts are per step: ~5 × EMAIL_TIMEOUT).
# Both durations come from settings (CAMPAIGN_RELAY_LEASE_SECONDS, default 3 minutes = 30 s of
# renewal + 150 s for the longest send; read once
# when a process starts): the fault tests run workers with a lease of seconds.
RELAY_LEASE = timedelta(seconds=settings.CAMPAIGN_RELAY_LEASE_SECONDS)
# A quarter of the lease (30 s for the default), so three renewals may be late before it lapses.
RELAY_LEASE_RENEW = min(timedelta(seconds=30), RELAY_LEASE / 4)
# A row still `sending` this long after its send began was lost with its worker: we cannot know
# if the provider got it, so it is recorded failed (delivery_unknown) rather than risk a second
# send. Longer than any live send (EMAIL_TIMEOUT 30 s per SMTP step, SMS_TIMEOUT 10 s); the
# relay runs every minute, so a lost row is resolved within about six minutes. Should a live send
# outlast it, its success still overwrites the delivery_unknown (see _record_sent).
SENDING_STALE_AFTER = timedelta(seconds=settings.CAMPAIGN_RELAY_SENDING_STALE_SECONDS)


@dataclass
class RelaySummary:
    sent: dict[str, int] = field(default_factory=dict)
    retried: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    suppressed_at_send: dict[str, int] = field(default_factory=dict)
    stale_failed: int = 0
    # Channels whose per-minute rate (shared by all relays) was spent: their rest waits.
    rate_limited: list[str] = field(default_factory=list)

    def add(self, bucket: dict[str, int], key: str, n: int = 1) -> None:
        bucket[key] = bucket.get(key, 0) + n


# --- the message ------------------------------------------------------------------------------


def reason_text(reason: Any) -> str:
    """A churn reason (a scoring reason dict, or text) as the line a person reads."""
    if isinstance(reason, dict):
        return str(reason.get("text") or reason.get("label") or reason.get("feature") or reason)
    return str(reason)


@dataclass(frozen=True)
class MessageExtras:
    """What a chunk reads once for each of its customers: score reasons, recommended products."""

    reasons: list[Any]
    products: list[Any]


def _message_context(
    intervention: Intervention, reasons: list[Any], unsubscribe: str, products: list[Any]
) -> dict[str, Any]:
    coupon: Coupon | None = getattr(intervention, "coupon", None)
    return message_context(
        customer_name=intervention.customer.name or "",
        campaign=intervention.campaign.name,
        offer=intervention.offer,
        coupon_code=coupon.code if coupon else "",
        coupon_expires=f"{coupon.expires_at:%Y-%m-%d}" if coupon else "",
        unsubscribe_url=unsubscribe,
        reasons=[reason_text(r) for r in reasons],
        recommended_products=[product_context(p) for p in products],
    )


def intervention_message(
    *,
    intervention: Intervention,
    reasons: list[Any] | None = None,
    products: list[Any] | None = None,
) -> OutboundMessage:
    """The message an intervention sends: its template rendered with the restricted context."""
    unsubscribe = unsubscribe_url(
        customer_id=intervention.customer_id, intervention_id=intervention.pk
    )
    context = _message_context(intervention, reasons or [], unsubscribe, products or [])
    template: MessageTemplate | None = intervention.template
    rendered = (
        message_render(
            subject=template.subject,
            body=template.body,
            html_body=template.html_body,
            context=context,
        )
        if template
        else None
    )
    text = rendered.text if rendered else ""
    html = rendered.html if rendered else ""
    deep_link = (
        message_render(subject="", body=template.deep_link, html_body="", context=context).text
        if template and template.deep_link
        else ""
    )
    expires_at = None
    if intervention.channel == ContactChannel.IN_APP:
        coupon: Coupon | None = getattr(intervention, "coupon", None)
        expires_at = timezone.now() + timedelta(days=settings.IN_APP_MESSAGE_DAYS)
        if coupon is not None:
            expires_at = min(expires_at, coupon.expires_at)
    headers: dict[str, str] = {}
    if intervention.channel == ContactChannel.EMAIL:
        if "unsubscribe" not in text.lower():
            text += f"\n\nUnsubscribe: {unsubscribe}"
            html = html.replace("</body>", f'<p><a href="{unsubscribe}">Unsubscribe</a></p></body>')
        headers = {
            "List-Unsubscribe": f"<{unsubscribe}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
    return OutboundMessage(
        intervention_id=intervention.pk,
        idempotency_key=f"intervention-{intervention.pk}",
        customer_id=intervention.customer_id,
        to_email=intervention.customer.email,
        to_phone=intervention.customer.phone,
        subject=rendered.subject
        if rendered and intervention.channel in CHANNELS_WITH_SUBJECT
        else "",
        text=text,
        html=html,
        headers=headers,
        due_at=intervention.send_after or intervention.created_at,
        coupon_code=context["coupon_code"],
        deep_link=deep_link,
        image_url=template.image_url if template else "",
        expires_at=expires_at,
    )


# --- claiming, checking and sending -----------------------------------------------------------


def _outbox(now: datetime) -> QuerySet[Intervention]:
    return Intervention.objects.filter(
        Q(send_after__isnull=True) | Q(send_after__lte=now),
        Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - RELAY_LEASE),
        arm=Arm.TREATMENT,
        status__in=[InterventionStatus.PENDING, InterventionStatus.SCHEDULED],
    )


def _claim(*, channel: str, limit: int, now: datetime) -> list[int]:
    """Lease up to `limit` due outbox rows of a channel to this relay run (SKIP LOCKED on
    PostgreSQL, so concurrent relays take disjoint rows)."""
    with transaction.atomic():
        rows = _outbox(now).filter(channel=channel).order_by("pk")
        if connection.features.has_select_for_update_skip_locked:
            rows = rows.select_for_update(skip_locked=True)
        ids = list(rows.values_list("pk", flat=True)[:limit])
        if ids:
            Intervention.objects.filter(pk__in=ids).update(claimed_at=now)
    return ids


def _still_allowed(interventions: Sequence[Intervention]) -> dict[int, str]:
    """Last check before sending (the customer may have unsubscribed or been erased since the
    dispatch): {intervention id: reason} for those that may no longer be sent."""
    ids = [i.customer_id for i in interventions]
    frame = pd.DataFrame(
        {
            "intervention_id": [i.pk for i in interventions],
            "customer_id": ids,
            "channel": [i.channel for i in interventions],
            "erased": [i.customer.erased for i in interventions],
        }
    )
    consents = pd.DataFrame(
        list(
            Consent.objects.filter(customer_id__in=ids).values_list(
                "customer_id", "channel", "status"
            )
        ),
        columns=["customer_id", "channel", "status"],
    )
    columns = consent_columns(
        customer_ids=frame["customer_id"].drop_duplicates(),
        consents=consents,
        defaults=dict(settings.CONSENT_DEFAULTS),
    )
    frame = frame.join(columns, on="customer_id")
    reasons = pd.Series("", index=frame.index, dtype=object)
    push = frame["channel"].eq(ContactChannel.PUSH)
    if push.any():  # every device may have been unregistered or deleted since the dispatch
        reachable = set(
            Device.objects.filter(
                customer_id__in=frame.loc[push, "customer_id"].tolist(),
                status=DeviceStatus.ACTIVE,
            ).values_list("customer_id", flat=True)
        )
        reasons[push & ~frame["customer_id"].isin(reachable)] = SuppressionReason.NO_ADDRESS
    reasons[~consent_for_channel(frame)] = SuppressionReason.NO_CONSENT
    reasons[frame["erased"]] = SuppressionReason.ERASED
    blocked = frame.loc[reasons.ne("")]
    return dict(zip(blocked["intervention_id"], reasons[reasons.ne("")], strict=True))


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=settings.CAMPAIGN_RELAY_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0))


class Outcome(enum.Enum):
    SKIPPED = "skipped"  # never reached the provider (cannot render, or another relay has it)
    SENT = "sent"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


def _deliver_one(
    backend: ChannelBackend,
    intervention: Intervention,
    extras: MessageExtras,
    summary: RelaySummary,
    now: datetime,
) -> Outcome:
    """Check-and-set to `sending`, send, record. The compare-and-set is the at-most-once gate:
    a duplicated or retried relay finds the row no longer pending and skips it."""
    try:
        message = intervention_message(
            intervention=intervention, reasons=extras.reasons, products=extras.products
        )
    except Exception as exc:  # a template that cannot render is this message's permanent fault
        Intervention.objects.filter(
            pk=intervention.pk,
            status__in=[InterventionStatus.PENDING, InterventionStatus.SCHEDULED],
        ).update(
            status=InterventionStatus.FAILED,
            reason=FailureReason.REJECTED,
            detail=f"cannot render the message: {exc}"[:2000],
            updated_at=timezone.now(),
        )
        summary.add(summary.failed, FailureReason.REJECTED)
        return Outcome.SKIPPED
    # claimed_at now marks when the send began: the stale sweep measures from it.
    claimed = Intervention.objects.filter(
        pk=intervention.pk,
        arm=Arm.TREATMENT,
        status__in=[InterventionStatus.PENDING, InterventionStatus.SCHEDULED],
    ).update(
        status=InterventionStatus.SENDING,
        attempts=F("attempts") + 1,
        claimed_at=now,
        updated_at=timezone.now(),
    )
    if claimed != 1:
        return Outcome.SKIPPED
    attempts = intervention.attempts + 1
    try:
        provider_id = backend.send(message)
    except TransientDeliveryError as exc:
        if attempts >= settings.CAMPAIGN_RELAY_MAX_ATTEMPTS:
            _finish(intervention, InterventionStatus.FAILED, FailureReason.RETRIES_EXHAUSTED, exc)
            summary.add(summary.failed, FailureReason.RETRIES_EXHAUSTED)
        else:
            Intervention.objects.filter(
                pk=intervention.pk, status=InterventionStatus.SENDING
            ).update(
                status=InterventionStatus.PENDING,
                send_after=now + _backoff(attempts),
                claimed_at=None,
                detail=str(exc)[:2000],
                updated_at=now,
            )
            summary.retried += 1
        return Outcome.TRANSIENT
    except PermanentDeliveryError as exc:
        _finish(intervention, InterventionStatus.FAILED, FailureReason.REJECTED, exc)
        summary.add(summary.failed, FailureReason.REJECTED)
        return Outcome.PERMANENT
    _record_sent(intervention, provider_id)
    summary.add(summary.sent, intervention.channel)
    return Outcome.SENT


def _record_sent(intervention: Intervention, provider_id: str) -> None:
    """`sending` → `sent`; also over a delivery_unknown the stale sweep wrote while this (slow
    but live) send was still under way: the provider's answer is the better record."""
    sent_at = timezone.now()
    Intervention.objects.filter(
        Q(status=InterventionStatus.SENDING)
        | Q(status=InterventionStatus.FAILED, reason=FailureReason.DELIVERY_UNKNOWN),
        pk=intervention.pk,
    ).update(
        status=InterventionStatus.SENT,
        reason="",
        sent_at=sent_at,
        provider_message_id=provider_id[:200],
        detail="",
        updated_at=sent_at,
    )


def _finish(intervention: Intervention, status: str, reason: str, exc: Exception) -> None:
    Intervention.objects.filter(pk=intervention.pk, status=InterventionStatus.SENDING).update(
        status=status, reason=reason, detail=str(exc)[:2000], updated_at=timezone.now()
    )


def interventions_mark_stale(*, now: datetime) -> int:
    """Rows left `sending` by a lost worker (their send began over SENDING_STALE_AFTER ago):
    recorded failed with delivery_unknown, never re-sent (at most once). Every relay run sweeps
    first, so a lost row is resolved within a minute of becoming stale."""
    return Intervention.objects.filter(
        status=InterventionStatus.SENDING, claimed_at__lt=now - SENDING_STALE_AFTER
    ).update(
        status=InterventionStatus.FAILED,
        reason=FailureReason.DELIVERY_UNKNOWN,
        detail="the worker was lost while sending; not retried to avoid a second message",
        updated_at=now,
    )


def _claimed_chunk(ids: list[int], summary: RelaySummary, now: datetime) -> list[Intervention]:
    """The claimed interventions, less those the last check stops (recorded suppressed)."""
    chunk = list(
        Intervention.objects.filter(pk__in=ids)
        .select_related("customer", "offer", "template", "campaign", "coupon")
        .order_by("pk")
    )
    blocked = _still_allowed(chunk)
    for intervention_id, reason in blocked.items():
        Intervention.objects.filter(
            pk=intervention_id,
            status__in=[InterventionStatus.PENDING, InterventionStatus.SCHEDULED],
        ).update(status=InterventionStatus.SUPPRESSED, reason=reason, updated_at=now)
        summary.add(summary.suppressed_at_send, reason)
    return [i for i in chunk if i.pk not in blocked]


def _open(channel: str) -> ChannelBackend | None:
    backend = channel_backend(channel)
    try:
        backend.open()
    except (TransientDeliveryError, PermanentDeliveryError) as exc:
        logger.warning("relay: %s channel unavailable: %s", channel, exc)
        return None
    return backend


def _hold(rest: Sequence[Intervention], claimed_at: datetime | None) -> None:
    """Renew (a time) or release (None) the lease on the chunk's rows not yet reached."""
    Intervention.objects.filter(
        pk__in=[i.pk for i in rest],
        status__in=[InterventionStatus.PENDING, InterventionStatus.SCHEDULED],
    ).update(claimed_at=claimed_at)


def _send_chunk(
    channel: str, chunk: list[Intervention], summary: RelaySummary, clock: Callable[[], datetime]
) -> tuple[int, bool]:
    """Send one claimed chunk on its own connection, renewing the lease as it goes. After a
    transient error (an SMTP 4xx — a 421 closes the session — or a dropped connection) the
    connection is reopened, so the next message goes out on a fresh one instead of failing
    unsent. Returns (messages handed to the provider, whether the channel could be opened)."""
    customer_ids = [i.customer_id for i in chunk]
    reasons = customer_latest_reasons(customer_ids=customer_ids)
    products = customer_recommended_products(
        customer_ids=customer_ids, limit=settings.RECOMMENDATIONS_PER_MESSAGE
    )
    backend: ChannelBackend | None = None
    handed = 0
    renewed = clock()
    try:
        for index, intervention in enumerate(chunk):
            if clock() - renewed >= RELAY_LEASE_RENEW:
                renewed = clock()
                _hold(chunk[index:], renewed)
            if backend is None:
                backend = _open(channel)
                if backend is None:  # nothing more is sent: the rest waits for the next run
                    _hold(chunk[index:], None)
                    return handed, False
            outcome = _deliver_one(
                backend,
                intervention,
                MessageExtras(
                    reasons.get(intervention.customer_id, []),
                    products.get(intervention.customer_id, []),
                ),
                summary,
                clock(),
            )
            handed += outcome is not Outcome.SKIPPED
            if outcome is Outcome.TRANSIENT:
                backend.close()
                backend = None
    finally:
        if backend is not None:
            backend.close()
    return handed, True


def _channel_relay(
    channel: str, rate: int | None, summary: RelaySummary, clock: Callable[[], datetime]
) -> None:
    """Claim and deliver one channel's due rows chunk by chunk until none is due, or until the
    channel's per-minute `rate` (shared with every other relay, see rate.py) is spent."""
    while True:
        taken_at = clock()
        wanted = RELAY_CHUNK
        if rate is not None:
            wanted = relay_rate_take(channel=channel, limit=rate, wanted=wanted, now=taken_at)
            if not wanted:
                summary.rate_limited.append(channel)
                return
        ids = _claim(channel=channel, limit=wanted, now=clock())
        chunk = _claimed_chunk(ids, summary, clock()) if ids else []
        handed, usable = _send_chunk(channel, chunk, summary, clock) if chunk else (0, True)
        if rate is not None:
            relay_rate_return(channel=channel, count=wanted - handed, now=taken_at)
        if not ids or not usable:
            return


def _wall_clock() -> datetime:
    return timezone.now()


def interventions_relay(
    *,
    now: datetime | None = None,
    channels: Iterable[str] | None = None,
    max_per_channel: dict[str, int] | None = None,
) -> RelaySummary:
    """Deliver due treatment interventions from the outbox, chunk by chunk, per channel, at most
    `max_per_channel` messages per channel and minute across all relay processes (None: until
    the outbox is empty). `now` fixes the clock for the whole run (tests, replays); without it
    the run reads the time as it goes (leases, backoff, rate windows)."""
    summary = RelaySummary()
    clock: Callable[[], datetime] = (lambda: now) if now is not None else _wall_clock
    summary.stale_failed = interventions_mark_stale(now=clock())
    rates = max_per_channel or {}
    for channel in channels or ContactChannel.values:
        _channel_relay(channel, rates.get(channel), summary, clock)
    return summary
