"""The relay: deliver the outbox (treatment interventions `pending`/`scheduled`) through the
channels, at most once per intervention, and build the message each intervention sends.

Claims are leases (SKIP LOCKED on PostgreSQL) and every send passes a compare-and-set from
`pending` to `sending`, so duplicated or retried relays never send a message twice. Messages go
out in rounds of the channel's concurrency (one for SMTP by default, 8 for HTTP channels), and a
round costs one commit: the compare-and-set of its rows with the previous round's answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.utils import timezone

from campaigns.channels.base import (
    ChannelBackend,
    DeliveryError,
    OutboundMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from campaigns.channels.registry import channel_backend
from campaigns.models import (
    Arm,
    Campaign,
    ContactChannel,
    Coupon,
    FailureReason,
    Intervention,
    InterventionStatus,
    MessageTemplate,
    Offer,
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
from common.db.lookups import AnyOf, any_of_sql
from customers.models import Consent, Device, DeviceStatus
from scoring.selectors import customer_latest_reasons, customer_recommended_products

logger = logging.getLogger(__name__)

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


def _update_returning(
    where: str, params: list[Any], sets: dict[str, tuple[str, list[Any]]]
) -> list[int]:
    """UPDATE the interventions matching `where` (SQL over the table's columns), setting each
    column of `sets` to its (SQL, parameters), and return the ids it changed: one statement, so
    the row locks decide which of two relays gets a row. PostgreSQL and SQLite (3.35+) both have
    UPDATE … RETURNING."""
    table = connection.ops.quote_name(Intervention._meta.db_table)
    assignments = ", ".join(f"{connection.ops.quote_name(c)} = {v[0]}" for c, v in sets.items())
    values = [arg for v in sets.values() for arg in v[1]]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {assignments} WHERE {where} RETURNING id", [*values, *params]
        )
        return [int(row[0]) for row in cursor.fetchall()]


def _db_time(moment: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(moment)


def _claim(
    *,
    channel: str,
    limit: int,
    now: datetime,
    customer_ids: Collection[int] | None = None,
    after: int = 0,
) -> list[int]:
    """Lease up to `limit` due outbox rows of a channel to this relay run in one statement.
    PostgreSQL: UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING id, so
    concurrent relays take disjoint rows without waiting on each other; SQLite (one writer at
    a time) takes the same rows with the same statement, without the row lock."""
    rows = _outbox(now).filter(channel=channel, pk__gt=after).order_by("pk")
    if customer_ids is not None:
        rows = rows.filter(AnyOf(F("customer_id"), customer_ids))
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            rows = rows.select_for_update(skip_locked=True)
        select, params = rows.values("pk")[:limit].query.sql_with_params()
        ids = _update_returning(
            f"id IN ({select})", list(params), {"claimed_at": ("%s", [_db_time(now)])}
        )
    return sorted(ids)


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
            Consent.objects.filter(AnyOf(F("customer_id"), ids)).values_list(
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


_WAITING = [InterventionStatus.PENDING, InterventionStatus.SCHEDULED]


def _per_row(values: dict[int, str]) -> Case:
    """One text value per intervention id, for an UPDATE of many rows that differ in it."""
    return Case(*(When(pk=pk, then=Value(v)) for pk, v in values.items()), default=Value(""))


@dataclass
class Handed:
    """One message handed to the provider in a round, with the provider's answer."""

    intervention: Intervention
    provider_id: str = ""
    error: DeliveryError | None = None
    answered_at: datetime = field(default_factory=timezone.now)

    @property
    def attempts(self) -> int:  # the attempt this send was (the gate counted it)
        return self.intervention.attempts + 1


def _begin_sending(ids: list[int], now: datetime) -> set[int]:
    """The at-most-once gate, for a round's rows at once: compare-and-set `pending`/`scheduled`
    → `sending` in one statement; only the ids it returns may be sent. A duplicated or retried
    relay finds the row no longer waiting and skips it. claimed_at now marks when the send began
    (the stale sweep measures from it)."""
    if not ids:
        return set()
    among, params = any_of_sql("id", ids, connection.vendor)
    return set(
        _update_returning(
            f"{among} AND arm = %s AND status IN (%s, %s)",
            [*params, Arm.TREATMENT, *_WAITING],
            {
                "status": ("%s", [InterventionStatus.SENDING]),
                "attempts": (f"{connection.ops.quote_name('attempts')} + 1", []),
                "claimed_at": ("%s", [_db_time(now)]),
                "updated_at": ("%s", [_db_time(timezone.now())]),
            },
        )
    )


def _record_sent(sent: Sequence[Handed], answered_at: datetime) -> None:
    """The round's successes in one statement: each row's provider id joined from a list
    (recorded with an ORM CASE of one WHEN per row, mostly spent building that CASE, a round
    was 15% of a relay process's busy time at 1,000 emails/s in a py-spy profile). On
    PostgreSQL the list is two array parameters (`AnyOf` says why), elsewhere a VALUES list."""
    table = connection.ops.quote_name(Intervention._meta.db_table)
    ids = [h.intervention.pk for h in sent]
    provider_ids = [h.provider_id[:200] for h in sent]
    if connection.vendor == "postgresql":
        answered = "SELECT * FROM unnest(%s::bigint[], %s::text[]) AS a(id, provider_id)"
        listed: list[Any] = [ids, provider_ids]
    else:
        rows = ", ".join(["(%s, %s)"] * len(sent))
        answered = (
            "SELECT CAST(column1 AS BIGINT) AS id, column2 AS provider_id "
            f"FROM (VALUES {rows}) AS answered"
        )
        listed = [value for pair in zip(ids, provider_ids, strict=True) for value in pair]
    at = _db_time(answered_at)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, reason = '', sent_at = %s, "
            "provider_message_id = v.provider_id, detail = '', updated_at = %s "
            f"FROM ({answered}) AS v "
            f"WHERE {table}.id = v.id AND ({table}.status = %s "
            f"OR ({table}.status = %s AND {table}.reason = %s))",
            [
                InterventionStatus.SENT,
                at,
                at,
                *listed,
                InterventionStatus.SENDING,
                InterventionStatus.FAILED,
                FailureReason.DELIVERY_UNKNOWN,
            ],
        )


def _record(handed: Sequence[Handed], summary: RelaySummary, now: datetime) -> None:
    """Write a round's answers: one UPDATE per outcome (sent; retried per attempt count, as their
    backoff differs; retries exhausted; rejected). Only from `sending` — except a success also
    replaces a delivery_unknown the stale sweep wrote while this slow but live send was still
    under way: the provider's answer is the better record."""
    if not handed:
        return
    sent = [h for h in handed if h.error is None]
    if sent:
        _record_sent(sent, max(h.answered_at for h in sent))
        for h in sent:
            summary.add(summary.sent, h.intervention.channel)
    retry: dict[int, list[Handed]] = {}
    failed: dict[str, list[Handed]] = {}
    for h in handed:
        if isinstance(h.error, TransientDeliveryError):
            if h.attempts >= settings.CAMPAIGN_RELAY_MAX_ATTEMPTS:
                failed.setdefault(FailureReason.RETRIES_EXHAUSTED, []).append(h)
            else:
                retry.setdefault(h.attempts, []).append(h)
        elif h.error is not None:
            failed.setdefault(FailureReason.REJECTED, []).append(h)
    for attempts, rows in retry.items():
        Intervention.objects.filter(
            pk__in=[h.intervention.pk for h in rows], status=InterventionStatus.SENDING
        ).update(
            status=InterventionStatus.PENDING,
            send_after=now + _backoff(attempts),
            claimed_at=None,
            detail=_per_row({h.intervention.pk: str(h.error)[:2000] for h in rows}),
            updated_at=now,
        )
        summary.retried += len(rows)
    for reason, rows in failed.items():
        Intervention.objects.filter(
            pk__in=[h.intervention.pk for h in rows], status=InterventionStatus.SENDING
        ).update(
            status=InterventionStatus.FAILED,
            reason=reason,
            detail=_per_row({h.intervention.pk: str(h.error)[:2000] for h in rows}),
            updated_at=timezone.now(),
        )
        summary.add(summary.failed, reason, len(rows))


def _send_one(
    backend: ChannelBackend, intervention: Intervention, message: OutboundMessage
) -> Handed:
    try:
        return Handed(intervention, provider_id=backend.send(message))
    except DeliveryError as exc:
        return Handed(intervention, error=exc)


def _gate_and_send(
    backend: ChannelBackend,
    answered: Sequence[Handed],
    batch: Sequence[Intervention],
    messages: dict[int, OutboundMessage],
    summary: RelaySummary,
    now: datetime,
    pool: ThreadPoolExecutor | None,
) -> list[Future[Handed]]:
    """One round: in one transaction (one commit), record answers not yet recorded and pass
    this round's rows through the gate; then hand those to the sending threads (or send them
    here, one by one, without a pool) and return their answers to come.
    A worker lost mid-round leaves only the rows gated and not yet recorded `sending` (one
    round by default: one row for serial channels, CAMPAIGN_RELAY_ROUND_MESSAGES at most; two
    rounds with CAMPAIGN_RELAY_OVERLAP_ROUNDS): they are recorded delivery_unknown, never
    resent; the rest of the chunk is still waiting."""
    with transaction.atomic():
        _record(answered, summary, now)
        began = _begin_sending([i.pk for i in batch], now)
    go = [i for i in batch if i.pk in began]
    if pool is not None:
        return [pool.submit(_send_one, backend, i, messages[i.pk]) for i in go]
    done: list[Future[Handed]] = []
    for intervention in go:
        future: Future[Handed] = Future()
        future.set_result(_send_one(backend, intervention, messages[intervention.pk]))
        done.append(future)
    return done


def _answers(futures: Sequence[Future[Handed]]) -> list[Handed]:
    return [future.result() for future in futures]


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


# What the relay reads of a claimed row, its customer and its coupon (and nothing else: the other
# ~40 columns, 9 timestamps and 4 decimals among them, were half of the CPU of loading a chunk;
# 127 → 52 ms per 1,000 rows). A column missing here would be read row by row when touched:
# tests/campaigns/services/test_relay_rounds.py checks the queries do not grow with the rows.
_CHUNK_COLUMNS = (
    *("id", "customer_id", "campaign_id", "offer_id", "template_id", "channel", "arm"),
    *("status", "attempts", "send_after", "created_at"),
    *("customer__name", "customer__email", "customer__phone", "customer__erased"),
    *("coupon__code", "coupon__expires_at"),
)


def _claimed_chunk(ids: list[int], summary: RelaySummary, now: datetime) -> list[Intervention]:
    """The claimed interventions, less those the last check stops (recorded suppressed: one
    UPDATE per reason)."""
    chunk = list(
        Intervention.objects.filter(AnyOf(F("pk"), ids))
        .select_related("customer", "coupon")
        .only(*_CHUNK_COLUMNS)
        .order_by("pk")
    )
    _attach_shared(chunk)
    blocked = _still_allowed(chunk)
    by_reason: dict[str, list[int]] = {}
    for intervention_id, reason in blocked.items():
        by_reason.setdefault(reason, []).append(intervention_id)
    for reason, blocked_ids in by_reason.items():
        stopped = Intervention.objects.filter(pk__in=blocked_ids, status__in=_WAITING).update(
            status=InterventionStatus.SUPPRESSED, reason=reason, updated_at=now
        )
        summary.add(summary.suppressed_at_send, reason, stopped)
    return [i for i in chunk if i.pk not in blocked]


def _attach_shared(chunk: Sequence[Intervention]) -> None:
    """Give each intervention its campaign, offer and template, each read once per chunk: a
    chunk's rows share a few of them, and joined to every row they were three model objects
    per message built from the same few rows (with the join, the chunk's query was a fifth of
    the relay's Python time at 1,000 emails/s, py-spy)."""
    for name, model in (("campaign", Campaign), ("offer", Offer), ("template", MessageTemplate)):
        key = f"{name}_id"
        wanted = {getattr(i, key) for i in chunk} - {None}
        shared = model._default_manager.in_bulk(wanted) if wanted else {}
        for intervention in chunk:
            if getattr(intervention, key) is not None:
                setattr(intervention, name, shared[getattr(intervention, key)])


def _render_chunk(
    chunk: Sequence[Intervention], summary: RelaySummary
) -> dict[int, OutboundMessage]:
    """Every message of the chunk, rendered before any is sent (reasons and products read in
    one query each). A template that cannot render is that message's permanent fault: those
    rows are recorded failed in one UPDATE and left out."""
    customer_ids = [i.customer_id for i in chunk]
    reasons = customer_latest_reasons(customer_ids=customer_ids)
    products = customer_recommended_products(
        customer_ids=customer_ids, limit=settings.RECOMMENDATIONS_PER_MESSAGE
    )
    messages: dict[int, OutboundMessage] = {}
    broken: dict[int, str] = {}
    for intervention in chunk:
        try:
            messages[intervention.pk] = intervention_message(
                intervention=intervention,
                reasons=reasons.get(intervention.customer_id, []),
                products=products.get(intervention.customer_id, []),
            )
        except Exception as exc:  # a template that cannot render: this message's fault only
            broken[intervention.pk] = f"cannot render the message: {exc}"[:2000]
    if broken:
        Intervention.objects.filter(pk__in=list(broken), status__in=_WAITING).update(
            status=InterventionStatus.FAILED,
            reason=FailureReason.REJECTED,
            detail=_per_row(broken),
            updated_at=timezone.now(),
        )
        summary.add(summary.failed, FailureReason.REJECTED, len(broken))
    return messages


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
    Intervention.objects.filter(AnyOf(F("pk"), [i.pk for i in rest]), status__in=_WAITING).update(
        claimed_at=claimed_at
    )


def _send_chunk(
    channel: str, chunk: list[Intervention], summary: RelaySummary, clock: Callable[[], datetime]
) -> tuple[int, bool]:
    """Send one claimed chunk in rounds of `backend.concurrency` messages (one for SMTP: one
    connection, one message at a time; several for HTTP channels: a thread each over one pooled
    session), or of CAMPAIGN_RELAY_ROUND_MESSAGES if larger, renewing the lease as it goes.
    Each round costs one database commit (`_gate_and_send`). With CAMPAIGN_RELAY_OVERLAP_ROUNDS
    the next round is gated and queued behind the one on the wire, so the sending threads never
    wait for the commit: that commit records the round before last.
    After a transient error (an SMTP 4xx — a 421 closes the session — or a dropped connection)
    the connection is reopened, so the next message goes out on a fresh one instead of failing
    unsent. Returns (messages handed to the provider, whether the channel could be opened)."""
    messages = _render_chunk(chunk, summary)
    todo = [i for i in chunk if i.pk in messages]
    overlap = settings.CAMPAIGN_RELAY_OVERLAP_ROUNDS
    backend: ChannelBackend | None = None
    pool: ThreadPoolExecutor | None = None
    handed = 0
    answered: list[Handed] = []  # sent, not yet recorded
    on_wire: list[Future[Handed]] = []  # with overlap: the round queued behind the last
    renewed = clock()
    index = 0
    round_size = 1
    try:
        while index < len(todo):
            if clock() - renewed >= RELAY_LEASE_RENEW:
                renewed = clock()
                _hold(todo[index:], renewed)
            if backend is None:
                backend = _open(channel)
                if backend is None:  # nothing more is sent: the rest waits for the next run
                    _hold(todo[index:], None)
                    return handed, False
                backend.prepare([messages[i.pk] for i in todo[index:]])
                round_size = max(backend.concurrency, settings.CAMPAIGN_RELAY_ROUND_MESSAGES)
                if (backend.concurrency > 1 or overlap) and pool is None:
                    pool = ThreadPoolExecutor(backend.concurrency, thread_name_prefix="relay")
            batch = todo[index : index + round_size]
            index += len(batch)
            sending = _gate_and_send(backend, answered, batch, messages, summary, clock(), pool)
            answered = []  # recorded by that commit
            if overlap:  # this round queues behind the one on the wire; wait for that one
                sending, on_wire = on_wire, sending
            answered = _answers(sending)
            handed += len(answered)
            backend.settle()
            if any(isinstance(h.error, TransientDeliveryError) for h in answered):
                answered += _answers(on_wire)  # the round behind must end before the close
                handed += len(on_wire)
                on_wire = []
                backend.close()
                backend = None
        answered += _answers(on_wire)
        handed += len(on_wire)
        on_wire = []
    finally:
        # The last rounds' answers (also when the run stops with an error: they were sent).
        answered += _answers(on_wire)
        _record(answered, summary, clock())
        if backend is not None:
            backend.close()
        if pool is not None:
            pool.shutdown()
    return handed, True


def _channel_relay(
    channel: str,
    rate: int | None,
    summary: RelaySummary,
    clock: Callable[[], datetime],
    customer_ids: Collection[int] | None = None,
) -> None:
    """Claim and deliver one channel's due rows chunk by chunk until none is due, or until the
    channel's per-minute `rate` (shared with every other relay, see rate.py) is spent.

    Claims walk the outbox by id from where the last one ended (a keyset): the rows behind it
    are sent, so starting from the first id each time would step over them again — at 100,000
    messages, the database's biggest cost of the relay. When nothing is left ahead, one more
    claim from the start takes what became due behind (an expired lease, a retry)."""
    after = 0
    while True:
        taken_at = clock()
        wanted = settings.CAMPAIGN_RELAY_CHUNK  # read per claim: the tests change it
        if rate is not None:
            wanted = relay_rate_take(channel=channel, limit=rate, wanted=wanted, now=taken_at)
            if not wanted:
                summary.rate_limited.append(channel)
                return
        ids = _claim(
            channel=channel, limit=wanted, now=clock(), customer_ids=customer_ids, after=after
        )
        chunk = _claimed_chunk(ids, summary, clock()) if ids else []
        handed, usable = _send_chunk(channel, chunk, summary, clock) if chunk else (0, True)
        if rate is not None:
            relay_rate_return(channel=channel, count=wanted - handed, now=taken_at)
        if not usable or (not ids and not after):
            return
        after = ids[-1] if ids else 0


def _wall_clock() -> datetime:
    return timezone.now()


def interventions_relay(
    *,
    now: datetime | None = None,
    channels: Iterable[str] | None = None,
    max_per_channel: dict[str, int] | None = None,
    customer_ids: Collection[int] | None = None,
) -> RelaySummary:
    """Deliver due treatment interventions from the outbox, chunk by chunk, per channel, at most
    `max_per_channel` messages per channel and minute across all relay processes (None: until
    the outbox is empty). `now` fixes the clock for the whole run (tests, replays); without it
    the run reads the time as it goes (leases, backoff, rate windows). `customer_ids` limits
    the run to those customers' rows (a triggered entry's message, sent at once)."""
    summary = RelaySummary()
    clock: Callable[[], datetime] = (lambda: now) if now is not None else _wall_clock
    summary.stale_failed = interventions_mark_stale(now=clock())
    rates = max_per_channel or {}
    for channel in channels or ContactChannel.values:
        _channel_relay(channel, rates.get(channel), summary, clock, customer_ids)
    return summary
