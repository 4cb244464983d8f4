"""Every state change of campaigns: dispatch (rules → arms → suppression → interventions and
coupons), the outbox relay that delivers them, callback outcomes, responses, unsubscribes, seeds.

Dispatch is set-based: customers are read in id-range chunks into pandas, decided vectorised
(campaigns.suppression holds the one policy) and written with one INSERT ... ON CONFLICT DO NOTHING.
"""

from __future__ import annotations

import base64
import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.core import signing
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from campaigns import selectors
from common.db.bulk import bulk_insert_ignore
from campaigns.channels import (
    ChannelBackend,
    OutboundMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
    channel_backend,
)
from campaigns.models import (
    COUPON_KINDS,
    Arm,
    CallbackOutcome,
    CallbackStatus,
    CallbackTask,
    Campaign,
    CampaignCycle,
    ContactChannel,
    Coupon,
    FailureReason,
    Intervention,
    InterventionStatus,
    MessageTemplate,
    Offer,
    Response,
    ResponseKind,
    Rule,
    SuppressionReason,
)
from campaigns.rendering import message_render
from campaigns.suppression import (
    PolicyConfig,
    budget_exhausted,
    consent_columns,
    consent_for_channel,
    global_control_mask,
    holdout_is_control,
    quiet_hours_send_after,
    suppression_reasons,
)
from customers.models import Consent, Customer
from customers.services import consent_set
from scoring.selectors import customer_latest_reasons

logger = logging.getLogger(__name__)

# Weekly cycles start on Mondays 00:00 UTC: cycle boundaries count from this Monday.
CYCLE_ANCHOR = datetime(2024, 1, 1, tzinfo=UTC)
# Interventions claimed by the relay per transaction: small enough that a worker lost mid-chunk
# strands little (its rows wait out RELAY_LEASE), large enough to amortise the claim query.
RELAY_CHUNK = 200
# A claimed chunk is the claimant's for this long; must exceed the time to send one chunk at the
# slowest channel rate (200 SMS at 60/min ≈ 3.3 min).
RELAY_LEASE = timedelta(minutes=10)
# A row still `sending` after this long was lost with its worker mid-send: we cannot know if the
# provider got it, so it is recorded failed (delivery_unknown) rather than risk a second send.
SENDING_STALE_AFTER = timedelta(hours=1)


def policy_config() -> PolicyConfig:
    return PolicyConfig(
        frequency_caps=dict(settings.CAMPAIGN_FREQUENCY_CAPS),
        quiet_start_hour=settings.CAMPAIGN_QUIET_HOURS[0],
        quiet_end_hour=settings.CAMPAIGN_QUIET_HOURS[1],
        quiet_channels=frozenset(settings.CAMPAIGN_QUIET_HOURS_CHANNELS),
        consent_defaults=dict(settings.CONSENT_DEFAULTS),
    )


def campaign_cycle_key(*, campaign: Campaign, now: datetime) -> tuple[str, datetime]:
    """The key and UTC start of the cycle `now` falls in, given the campaign's cadence."""
    minutes = int((now - CYCLE_ANCHOR).total_seconds() // 60)
    start = CYCLE_ANCHOR + timedelta(minutes=minutes - minutes % int(campaign.cadence_minutes))
    return start.strftime("%Y%m%dT%H%M"), start


# --- the decision: rules, arms, suppression ------------------------------------------------


@dataclass(frozen=True)
class DispatchSummary:
    """What a dispatch decided (or a preview would decide), per rule, arm, channel and reason."""

    campaign_id: int
    campaign: str
    cycle_key: str
    written: bool  # False for a preview, or when this cycle had already run
    already_ran: bool
    eligible: int  # matched a rule (both arms, before suppression)
    treatment: int
    control: int
    pending: int  # treatment to send now
    scheduled: int  # treatment delayed by quiet hours
    held_out: int  # control that passed suppression (tracked, never contacted)
    suppressed: dict[str, int]
    per_arm_suppressed: dict[str, dict[str, int]]
    per_rule: list[dict[str, Any]]
    per_channel: dict[str, int]  # treatment to deliver per channel
    coupons: int
    offer_cost: float  # unit cost of the offers made to treated customers
    interventions_created: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **changes: Any) -> DispatchSummary:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{**{k: v for k, v in data.items() if k in known}, **changes})


@dataclass
class _Plan:
    decisions: pd.DataFrame  # one row per matched customer
    rules: list[Rule]


def _attribute_mask(values: pd.Series, operator: str, expected: Any) -> pd.Series:
    """One attribute condition over a column of raw JSON values (text on PostgreSQL)."""
    text = values.map(lambda v: "" if v is None else str(v).strip()).str.lower()
    if operator in ("gt", "gte", "lt", "lte"):
        number = pd.to_numeric(values, errors="coerce")
        bound = float(expected)
        return {
            "gt": number > bound,
            "gte": number >= bound,
            "lt": number < bound,
            "lte": number <= bound,
        }[operator].fillna(False)
    if operator == "in":
        options = expected if isinstance(expected, list) else str(expected).split(",")
        return text.isin([str(o).strip().lower() for o in options])
    if operator == "contains":
        return text.str.contains(str(expected).lower(), regex=False)
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        equal = pd.to_numeric(values, errors="coerce").eq(float(expected))
    elif isinstance(expected, bool):
        equal = text.isin(["true", "1"] if expected else ["false", "0"])
    else:
        equal = text.eq(str(expected).strip().lower())
    return equal if operator == "eq" else ~equal


def _rule_mask(frame: pd.DataFrame, rule: Rule) -> pd.Series:
    mask = pd.Series(True, index=frame.index)
    if rule.tiers:
        mask &= frame["tier"].isin(rule.tiers)
    if rule.min_probability is not None:
        mask &= frame["probability"] >= rule.min_probability
    if rule.max_probability is not None:
        mask &= frame["probability"] <= rule.max_probability
    if rule.min_value is not None:
        mask &= frame["value"] >= float(rule.min_value)
    if rule.max_value is not None:
        mask &= frame["value"] <= float(rule.max_value)
    for condition in rule.attribute_conditions or []:
        column = f"attr__{condition['field']}"
        mask &= _attribute_mask(frame[column], condition["operator"], condition["value"])
    if rule.consent_channel:
        mask &= frame[f"consent_{rule.consent_channel}"]
    return mask


def _campaign_plan(*, campaign: Campaign, now: datetime, cycle_start: datetime) -> _Plan:
    """Decide every matching customer's rule, arm, status and reason; write nothing."""
    rules = list(campaign.rules.select_related("offer", "template").order_by("position", "pk"))
    if not rules:
        return _Plan(pd.DataFrame(), rules)
    config = policy_config()
    attribute_keys = sorted(
        {c["field"] for rule in rules for c in (rule.attribute_conditions or [])}
    )
    need_value = any(r.min_value is not None or r.max_value is not None for r in rules)
    history_days = max(
        [campaign.cooldown_days, 1, *[days for _n, days in config.frequency_caps.values()]]
    )
    since = min(now - timedelta(days=history_days), cycle_start)
    rank = (campaign.priority, campaign.pk)
    channel_of = np.array([r.channel for r in rules], dtype=object)
    cost_of = np.array([float(r.offer.unit_cost) if r.offer else 0.0 for r in rules])
    chunks: list[pd.DataFrame] = []
    for id_range in selectors.candidate_id_ranges(rules=rules):
        frame = selectors.candidates_frame(
            rules=rules, id_range=id_range, attribute_keys=attribute_keys
        )
        if frame.empty:
            continue
        if need_value:
            values = selectors.customer_value_frame(id_range=id_range, now=now)
            frame["value"] = frame["customer_id"].map(values).fillna(0.0)
        else:
            frame["value"] = 0.0
        consent = consent_columns(
            customer_ids=frame["customer_id"],
            consents=selectors.consents_frame(id_range=id_range),
            defaults=config.consent_defaults,
        )
        frame = frame.join(consent, on="customer_id")
        matched = np.full(len(frame), -1)
        for index, rule in enumerate(rules):
            mask = _rule_mask(frame, rule).to_numpy() & (matched == -1)
            matched[mask] = index
        frame = frame.loc[matched >= 0].copy()
        if frame.empty:
            continue
        frame["rule_index"] = matched[matched >= 0]
        frame["channel"] = channel_of[frame["rule_index"].to_numpy()]
        frame["offer_cost"] = cost_of[frame["rule_index"].to_numpy()]
        # The arm is decided first, from the customer alone, and never looked at again until
        # the very end: rules and suppression below cannot depend on it.
        frame["is_control"] = holdout_is_control(
            salt=campaign.salt,
            customer_ids=frame["customer_id"].to_numpy(),
            control_percentage=float(campaign.control_percentage),
        )
        frame["global_control"] = global_control_mask(
            customer_ids=frame["customer_id"].to_numpy(),
            salt=settings.GLOBAL_CONTROL_SALT,
            percentage=float(settings.GLOBAL_CONTROL_PERCENT),
        )
        frame["reason"] = suppression_reasons(
            frame,
            history=selectors.contact_history_frame(id_range=id_range, since=since),
            campaign_id=campaign.pk,
            campaign_rank=rank,
            cooldown_days=campaign.cooldown_days,
            cycle_start=cycle_start,
            now=now,
            config=config,
        )
        chunks.append(frame)
    if not chunks:
        return _Plan(pd.DataFrame(), rules)
    decisions = pd.concat(chunks, ignore_index=True)
    # Budget: highest-priority rule first, then highest risk; arm-blind (see budget_exhausted).
    decisions = decisions.sort_values(
        ["rule_index", "probability", "customer_id"], ascending=[True, False, True]
    ).reset_index(drop=True)
    open_rows = decisions["reason"].eq("")
    used_n, used_cost = selectors.campaign_usage(campaign=campaign)
    limits_n = [
        v
        for v in (
            campaign.max_interventions_per_cycle,
            None
            if campaign.max_interventions_total is None
            else max(campaign.max_interventions_total - used_n, 0),
        )
        if v is not None
    ]
    limits_cost = [
        v
        for v in (
            None
            if campaign.max_offer_value_per_cycle is None
            else float(campaign.max_offer_value_per_cycle),
            None
            if campaign.max_offer_value_total is None
            else max(float(campaign.max_offer_value_total) - used_cost, 0.0),
        )
        if v is not None
    ]
    over = budget_exhausted(
        decisions.loc[open_rows],
        max_count=min(limits_n) if limits_n else None,
        max_cost=min(limits_cost) if limits_cost else None,
    )
    decisions.loc[over.index[over.to_numpy()], "reason"] = SuppressionReason.BUDGET
    # Quiet hours delay (never drop) the rows that may be sent; computed for both arms alike.
    open_rows = decisions["reason"].eq("")
    decisions["send_after"] = quiet_hours_send_after(decisions, now=now, config=config).where(
        open_rows
    )
    control = decisions["is_control"].to_numpy()
    status = np.where(
        ~open_rows.to_numpy(),
        InterventionStatus.SUPPRESSED,
        np.where(
            control,
            InterventionStatus.HELD_OUT,
            np.where(
                decisions["send_after"].notna().to_numpy(),
                InterventionStatus.SCHEDULED,
                InterventionStatus.PENDING,
            ),
        ),
    )
    decisions["status"] = status
    return _Plan(decisions, rules)


def _rule_label(rule: Rule) -> str:
    return f"{rule.position}. {rule.name}"


def _summarise(
    *, campaign: Campaign, plan: _Plan, cycle_key: str, written: bool, coupons: int
) -> DispatchSummary:
    d = plan.decisions
    per_rule: list[dict[str, Any]] = []
    for index, rule in enumerate(plan.rules):
        rows = d.loc[d["rule_index"].eq(index)] if not d.empty else d
        entry: dict[str, Any] = {
            "rule": _rule_label(rule),
            "channel": rule.channel,
            "offer": rule.offer.name if rule.offer else "",
        }
        for arm, is_control in ((Arm.TREATMENT.value, False), (Arm.CONTROL.value, True)):
            part = rows.loc[rows["is_control"].eq(is_control)] if not rows.empty else rows
            taken = part.loc[part["reason"].eq("")] if not part.empty else part
            entry[arm] = {
                "matched": len(part),
                "taken": len(taken),
                "suppressed": dict(Counter(part["reason"].loc[part["reason"].ne("")]))
                if not part.empty
                else {},
                "offer_cost": round(float(taken["offer_cost"].sum()), 2)
                if not taken.empty and not is_control
                else 0.0,
            }
        per_rule.append(entry)
    if d.empty:
        return DispatchSummary(
            campaign_id=campaign.pk,
            campaign=campaign.name,
            cycle_key=cycle_key,
            written=written,
            already_ran=False,
            eligible=0,
            treatment=0,
            control=0,
            pending=0,
            scheduled=0,
            held_out=0,
            suppressed={},
            per_arm_suppressed={},
            per_rule=per_rule,
            per_channel={},
            coupons=coupons,
            offer_cost=0.0,
        )
    treated = d.loc[~d["is_control"]]
    suppressed = d.loc[d["reason"].ne("")]
    taken = treated.loc[treated["reason"].eq("")]
    return DispatchSummary(
        campaign_id=campaign.pk,
        campaign=campaign.name,
        cycle_key=cycle_key,
        written=written,
        already_ran=False,
        eligible=len(d),
        treatment=len(treated),
        control=int(d["is_control"].sum()),
        pending=int(d["status"].eq(InterventionStatus.PENDING).sum()),
        scheduled=int(d["status"].eq(InterventionStatus.SCHEDULED).sum()),
        held_out=int(d["status"].eq(InterventionStatus.HELD_OUT).sum()),
        suppressed={str(k): int(v) for k, v in Counter(suppressed["reason"]).items()},
        per_arm_suppressed={
            arm: {
                str(k): int(v)
                for k, v in Counter(
                    suppressed.loc[suppressed["is_control"].eq(c), "reason"]
                ).items()
            }
            for arm, c in (("treatment", False), ("control", True))
        },
        per_rule=per_rule,
        per_channel={str(k): int(v) for k, v in Counter(taken["channel"]).items()},
        coupons=coupons,
        offer_cost=round(float(taken["offer_cost"].sum()), 2),
    )


def campaign_preview(*, campaign: Campaign, now: datetime) -> DispatchSummary:
    """What dispatching now would do — per rule and arm, taken, suppressed by reason, offer
    cost — without writing anything."""
    started = time.perf_counter()
    key, start = campaign_cycle_key(campaign=campaign, now=now)
    plan = _campaign_plan(campaign=campaign, now=now, cycle_start=start)
    summary = _summarise(campaign=campaign, plan=plan, cycle_key=key, written=False, coupons=0)
    return DispatchSummary.from_dict(
        summary.to_dict(), seconds=round(time.perf_counter() - started, 3)
    )


def _coupon_codes(count: int) -> list[str]:
    """`count` unguessable codes of 80 random bits (secrets), as XXXX-XXXX-XXXX-XXXX base32."""
    raw = base64.b32encode(secrets.token_bytes(10 * count)).decode()
    # 10 bytes encode to exactly 16 base32 characters, so slicing keeps each code independent.
    return [
        f"{raw[i : i + 4]}-{raw[i + 4 : i + 8]}-{raw[i + 8 : i + 12]}-{raw[i + 12 : i + 16]}"
        for i in range(0, 16 * count, 16)
    ]


def _interventions_write(
    *, campaign: Campaign, cycle: CampaignCycle, plan: _Plan, now: datetime
) -> tuple[int, int]:
    """Insert the plan's interventions and the treated customers' coupons; (created, coupons)."""
    d = plan.decisions
    if d.empty:
        return 0, 0
    rule_ids = np.array([r.pk for r in plan.rules])
    offer_ids = pd.array([r.offer_id for r in plan.rules], dtype="Int64")
    template_ids = pd.array([r.template_id for r in plan.rules], dtype="Int64")
    ri = d["rule_index"].to_numpy()
    rows = pd.DataFrame(
        {
            "campaign_id": campaign.pk,
            "cycle_id": cycle.pk,
            "rule_id": rule_ids[ri],
            "customer_id": d["customer_id"].to_numpy(),
            "arm": np.where(d["is_control"].to_numpy(), Arm.CONTROL, Arm.TREATMENT),
            "channel": d["channel"].to_numpy(),
            "offer_id": offer_ids[ri],
            "template_id": template_ids[ri],
            "churn_probability": d["probability"].to_numpy(),
            "risk_tier": d["tier"].fillna("").to_numpy(),
            "model_version": d["model_version"].fillna("").to_numpy(),
            "customer_value": d["value"].to_numpy(),
            "offer_cost": d["offer_cost"].to_numpy(),
            "status": d["status"].astype(str).to_numpy(),
            "reason": d["reason"].astype(str).to_numpy(),
            "detail": "",
            "send_after": d["send_after"].to_numpy(),
            "attempts": 0,
            "provider_message_id": "",
            "created_at": now,
            "updated_at": now,
        }
    )
    inserted = bulk_insert_ignore(Intervention, rows, returning=("id", "customer_id"))
    if not inserted:
        return 0, 0
    # Coupons for the treated customers that may be contacted (pending or scheduled).
    ids = pd.DataFrame(inserted, columns=["intervention_id", "customer_id"])
    rows = rows.merge(ids, on="customer_id")
    coupon_offers = {r.offer_id: r.offer for r in plan.rules if r.offer and r.offer.issues_coupon}
    wanted = rows.loc[
        rows["arm"].eq(Arm.TREATMENT)
        & rows["status"].isin([InterventionStatus.PENDING, InterventionStatus.SCHEDULED])
        & rows["offer_id"].isin(list(coupon_offers))
    ]
    if wanted.empty:
        return len(inserted), 0
    offer_of = wanted["offer_id"].astype(int)
    kinds = offer_of.map({k: o.kind for k, o in coupon_offers.items()})
    values = offer_of.map({k: float(o.value) for k, o in coupon_offers.items()})
    days = offer_of.map({k: o.validity_days for k, o in coupon_offers.items()})
    coupons = pd.DataFrame(
        {
            "code": _coupon_codes(len(wanted)),
            "customer_id": wanted["customer_id"].to_numpy(),
            "offer_id": offer_of.to_numpy(),
            "intervention_id": wanted["intervention_id"].to_numpy(),
            "kind": kinds.to_numpy(),
            "value": values.to_numpy(),
            "expires_at": (pd.Timestamp(now) + pd.to_timedelta(days, unit="D")).to_numpy(),
            "created_at": now,
        }
    )
    created = bulk_insert_ignore(Coupon, coupons, returning=("id",))
    return len(inserted), len(created)


def campaign_dispatch(*, campaign: Campaign, now: datetime) -> DispatchSummary:
    """Run one cycle of a campaign: decide and record every matching customer's intervention.

    One transaction: the cycle guard row (unique per campaign and cycle key), the interventions
    (treatment ones `pending`/`scheduled`: the outbox) and the coupons. A second call for the
    same cycle returns the first one's summary and writes nothing.
    """
    started = time.perf_counter()
    key, start = campaign_cycle_key(campaign=campaign, now=now)
    with transaction.atomic():
        try:
            with transaction.atomic():
                cycle = CampaignCycle.objects.create(
                    campaign=campaign, cycle_key=key, started_at=now
                )
        except IntegrityError:
            done = CampaignCycle.objects.get(campaign=campaign, cycle_key=key)
            return DispatchSummary.from_dict(
                done.summary or {"campaign_id": campaign.pk, "campaign": campaign.name},
                cycle_key=key,
                written=False,
                already_ran=True,
                **_empty_counts(done.summary),
            )
        plan = _campaign_plan(campaign=campaign, now=now, cycle_start=start)
        if plan.decisions.empty:
            # Nothing matched (e.g. no scores yet): release the guard so a run later in this
            # cycle, after scoring, can still dispatch.
            cycle.delete()
            return _summarise(campaign=campaign, plan=plan, cycle_key=key, written=False, coupons=0)
        created, coupons = _interventions_write(campaign=campaign, cycle=cycle, plan=plan, now=now)
        summary = DispatchSummary.from_dict(
            _summarise(
                campaign=campaign, plan=plan, cycle_key=key, written=True, coupons=coupons
            ).to_dict(),
            interventions_created=created,
            seconds=round(time.perf_counter() - started, 3),
        )
        cycle.summary = summary.to_dict()
        cycle.finished_at = timezone.now()
        cycle.save(update_fields=["summary", "finished_at"])
    return summary


def _empty_counts(summary: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults for a guard row without a summary (it never lacks one once committed)."""
    if summary:
        return {}
    zero: dict[str, Any] = dict.fromkeys(
        ("eligible", "treatment", "control", "pending", "scheduled", "held_out", "coupons"), 0
    )
    return {
        **zero,
        "suppressed": {},
        "per_arm_suppressed": {},
        "per_rule": [],
        "per_channel": {},
        "offer_cost": 0.0,
    }


def campaigns_dispatch_due(*, now: datetime) -> list[DispatchSummary]:
    """Dispatch every active campaign whose current cycle has not run, highest priority first
    (so a lower-priority campaign sees what a higher one took this cycle)."""
    return [
        campaign_dispatch(campaign=campaign, now=now)
        for campaign in selectors.campaigns_due(now=now, cycle_key_for=campaign_cycle_key)
    ]


# --- the relay: deliver the outbox ---------------------------------------------------------


@dataclass
class RelaySummary:
    sent: dict[str, int] = field(default_factory=dict)
    retried: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    suppressed_at_send: dict[str, int] = field(default_factory=dict)
    stale_failed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def add(self, bucket: dict[str, int], key: str, n: int = 1) -> None:
        bucket[key] = bucket.get(key, 0) + n


def _outbox(now: datetime) -> Any:
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


def _reason_text(reason: Any) -> str:
    if isinstance(reason, dict):
        return str(reason.get("text") or reason.get("label") or reason.get("feature") or reason)
    return str(reason)


def unsubscribe_token_make(*, customer_id: int, intervention_id: int | None = None) -> str:
    return signing.dumps({"c": customer_id, "i": intervention_id}, salt=UNSUBSCRIBE_SALT)


UNSUBSCRIBE_SALT = "campaigns.unsubscribe"


def unsubscribe_url(*, customer_id: int, intervention_id: int | None = None) -> str:
    token = unsubscribe_token_make(customer_id=customer_id, intervention_id=intervention_id)
    return settings.PUBLIC_BASE_URL + reverse("campaigns-unsubscribe", args=[token])


def _message_context(
    intervention: Intervention, reasons: list[Any], unsubscribe: str
) -> dict[str, Any]:
    customer = intervention.customer
    offer: Offer | None = intervention.offer
    coupon: Coupon | None = getattr(intervention, "coupon", None)
    return {
        "first_name": (customer.name or "").split(" ")[0] if customer.name else "",
        "campaign": intervention.campaign.name,
        "offer": {
            "name": offer.name,
            "kind": offer.kind,
            "value": offer.value_text,
            "description": offer.describe(),
        }
        if offer
        else {},
        "coupon_code": coupon.code if coupon else "",
        "coupon_expires": f"{coupon.expires_at:%Y-%m-%d}" if coupon else "",
        "unsubscribe_url": unsubscribe,
        "reasons": [_reason_text(r) for r in reasons],
    }


def intervention_message(
    *, intervention: Intervention, reasons: list[Any] | None = None
) -> OutboundMessage:
    """The message an intervention sends: its template rendered with the restricted context."""
    unsubscribe = unsubscribe_url(
        customer_id=intervention.customer_id, intervention_id=intervention.pk
    )
    context = _message_context(intervention, reasons or [], unsubscribe)
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
        subject=rendered.subject if rendered else "",
        text=text,
        html=html,
        headers=headers,
        due_at=intervention.send_after or intervention.created_at,
        coupon_code=context["coupon_code"],
    )


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
    reasons[~consent_for_channel(frame)] = SuppressionReason.NO_CONSENT
    reasons[frame["erased"]] = SuppressionReason.ERASED
    blocked = frame.loc[reasons.ne("")]
    return dict(zip(blocked["intervention_id"], reasons[reasons.ne("")], strict=True))


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=settings.CAMPAIGN_RELAY_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0))


def _deliver_one(
    backend: ChannelBackend,
    intervention: Intervention,
    reasons: list[Any],
    summary: RelaySummary,
    now: datetime,
) -> None:
    """Check-and-set to `sending`, send, record. The compare-and-set is the at-most-once gate:
    a duplicated or retried relay finds the row no longer pending and skips it."""
    try:
        message = intervention_message(intervention=intervention, reasons=reasons)
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
        return
    claimed = Intervention.objects.filter(
        pk=intervention.pk,
        arm=Arm.TREATMENT,
        status__in=[InterventionStatus.PENDING, InterventionStatus.SCHEDULED],
    ).update(
        status=InterventionStatus.SENDING, attempts=F("attempts") + 1, updated_at=timezone.now()
    )
    if claimed != 1:
        return
    attempts = intervention.attempts + 1
    channel = intervention.channel
    try:
        provider_id = backend.send(message)
    except TransientDeliveryError as exc:
        # Backoff counts from the relay run's clock (the one its claims and leases use).
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
        return
    except PermanentDeliveryError as exc:
        _finish(intervention, InterventionStatus.FAILED, FailureReason.REJECTED, exc)
        summary.add(summary.failed, FailureReason.REJECTED)
        return
    sent_at = timezone.now()
    Intervention.objects.filter(pk=intervention.pk, status=InterventionStatus.SENDING).update(
        status=InterventionStatus.SENT,
        sent_at=sent_at,
        provider_message_id=provider_id[:200],
        detail="",
        updated_at=sent_at,
    )
    summary.add(summary.sent, channel)


def _finish(intervention: Intervention, status: str, reason: str, exc: Exception) -> None:
    Intervention.objects.filter(pk=intervention.pk, status=InterventionStatus.SENDING).update(
        status=status, reason=reason, detail=str(exc)[:2000], updated_at=timezone.now()
    )


def interventions_mark_stale(*, now: datetime) -> int:
    """Rows left `sending` by a lost worker: recorded failed, never re-sent (at most once)."""
    return Intervention.objects.filter(
        status=InterventionStatus.SENDING, claimed_at__lt=now - SENDING_STALE_AFTER
    ).update(
        status=InterventionStatus.FAILED,
        reason=FailureReason.DELIVERY_UNKNOWN,
        detail="the worker was lost while sending; not retried to avoid a second message",
        updated_at=now,
    )


def interventions_relay(
    *,
    now: datetime | None = None,
    channels: Iterable[str] | None = None,
    max_per_channel: dict[str, int] | None = None,
) -> RelaySummary:
    """Deliver due treatment interventions from the outbox, chunk by chunk, per channel, up to
    `max_per_channel` messages each (None: until the outbox is empty)."""
    summary = RelaySummary()
    now = now or timezone.now()
    summary.stale_failed = interventions_mark_stale(now=now)
    for channel in channels or ContactChannel.values:
        allowance = (max_per_channel or {}).get(channel)
        done = 0
        backend: ChannelBackend | None = None
        try:
            while allowance is None or done < allowance:
                limit = RELAY_CHUNK if allowance is None else min(RELAY_CHUNK, allowance - done)
                ids = _claim(channel=channel, limit=limit, now=now)
                if not ids:
                    break
                done += len(ids)
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
                chunk = [i for i in chunk if i.pk not in blocked]
                if not chunk:
                    continue
                if backend is None:
                    backend = channel_backend(channel)
                    try:
                        backend.open()
                    except (TransientDeliveryError, PermanentDeliveryError) as exc:
                        # Nothing was sent: release the lease so the rows wait for the next run.
                        Intervention.objects.filter(pk__in=ids).update(claimed_at=None)
                        logger.warning("relay: %s channel unavailable: %s", channel, exc)
                        backend = None
                        break
                reasons = customer_latest_reasons(customer_ids=[i.customer_id for i in chunk])
                for intervention in chunk:
                    _deliver_one(
                        backend,
                        intervention,
                        reasons.get(intervention.customer_id, []),
                        summary,
                        now,
                    )
        finally:
            if backend is not None:
                backend.close()
    return summary


# --- callbacks, responses, unsubscribe -------------------------------------------------------


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
        return Response.objects.get(idempotency_key=idempotency_key), False


def callback_task_record_outcome(
    *,
    task: CallbackTask,
    outcome: str,
    notes: str = "",
    agent: Any = None,
    now: datetime | None = None,
) -> Response:
    """Close a callback with its outcome and log it as a response of the intervention.
    `do_not_call` also revokes the customer's call consent."""
    if outcome not in CallbackOutcome.values:
        raise ValueError(f"unknown outcome {outcome!r}")
    now = now or timezone.now()
    with transaction.atomic():
        locked = CallbackTask.objects.select_for_update().get(pk=task.pk)
        locked.outcome, locked.notes = outcome, notes
        locked.status, locked.completed_at = CallbackStatus.DONE, now
        locked.save(update_fields=["outcome", "notes", "status", "completed_at"])
        response, _ = response_record(
            intervention=locked.intervention,
            kind=ResponseKind.CALLBACK_OUTCOME,
            occurred_at=now,
            idempotency_key=f"callback-{locked.pk}-{outcome}",
            payload={"outcome": outcome, "agent": getattr(agent, "username", ""), "notes": notes},
        )
        if outcome == CallbackOutcome.DO_NOT_CALL:
            consent_set(
                customer=locked.customer,
                channel="call",
                status="revoked",
                source="callback_outcome",
                recorded_at=now,
            )
    task.refresh_from_db()
    return response


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


# --- seeds ---------------------------------------------------------------------------------

# Permissions of the two staff roles (codenames of the campaigns app); created after migrate.
CRM_STAFF_GROUP = "crm staff"
ROLE_PERMISSIONS = {
    CRM_STAFF_GROUP: [
        f"{action}_{model}"
        for model in ("campaign", "rule", "offer", "messagetemplate")
        for action in ("add", "change", "view")
    ]
    + [
        "view_intervention",
        "view_campaigncycle",
        "view_coupon",
        "view_callbacktask",
        "change_callbacktask",
        "view_response",
    ],
}


def campaign_groups_ensure(*, using: str = "default") -> None:
    """The "crm staff" and agents groups with their permissions (idempotent; after migrate)."""
    from django.contrib.auth.models import Group, Permission

    roles = {
        **ROLE_PERMISSIONS,
        settings.CAMPAIGN_AGENTS_GROUP: ["view_mycallback", "change_mycallback"],
    }
    for name, codenames in roles.items():
        group, _ = Group.objects.using(using).get_or_create(name=name)
        permissions = Permission.objects.using(using).filter(
            content_type__app_label="campaigns", codename__in=codenames
        )
        group.permissions.add(*permissions)


def campaigns_seed(*, spec: dict[str, Any]) -> list[Campaign]:
    """Create the offers, templates and campaigns (with rules) a spec describes, by name, when
    they do not exist yet; existing ones are left as staff edited them. Returns new campaigns."""
    created: list[Campaign] = []
    with transaction.atomic():
        offers = {
            o["name"]: Offer.objects.get_or_create(name=o["name"], defaults=o)[0]
            for o in spec.get("offers", [])
        }
        templates = {
            t["name"]: MessageTemplate.objects.get_or_create(name=t["name"], defaults=t)[0]
            for t in spec.get("templates", [])
        }
        for item in spec.get("campaigns", []):
            fields = {k: v for k, v in item.items() if k != "rules"}
            if Campaign.objects.filter(name=fields["name"]).exists():
                continue
            campaign = Campaign.objects.create(**fields)
            for position, rule in enumerate(item.get("rules", []), start=1):
                values = {k: v for k, v in rule.items() if k not in ("offer", "template")}
                values.setdefault("position", position)
                Rule.objects.create(
                    campaign=campaign,
                    offer=offers.get(rule.get("offer", "")) if rule.get("offer") else None,
                    template=templates.get(rule["template"]) if rule.get("template") else None,
                    **values,
                )
            created.append(campaign)
    return created


__all__ = [
    "COUPON_KINDS",
    "DispatchSummary",
    "RelaySummary",
    "callback_task_record_outcome",
    "campaign_cycle_key",
    "campaign_dispatch",
    "campaign_preview",
    "campaigns_dispatch_due",
    "campaigns_seed",
    "customer_unsubscribe",
    "intervention_message",
    "interventions_mark_stale",
    "interventions_relay",
    "response_record",
    "unsubscribe_url",
]
