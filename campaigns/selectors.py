"""Reused reads of campaigns: candidate frames for dispatch (set-based, by id range), contact
history, due campaigns, summaries, coupons and an agent's callbacks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from django.db.models import CharField, Count, Exists, OuterRef, Q, QuerySet, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from campaigns.measurement.outcomes import campaign_cost
from campaigns.models import (
    COUNTED_STATUSES,
    CallbackStatus,
    CallbackTask,
    Campaign,
    CampaignCycle,
    CampaignMode,
    CampaignStatus,
    Coupon,
    Intervention,
    InterventionStatus,
    UpliftModel,
    UpliftModelStatus,
)
from campaigns.rules import (
    OPERATORS,
    PROBABILITY,
    SEGMENT,
    TIER,
    RuleSpec,
    attribute_column,
    attribute_fields,
    segment_keys,
)
from campaigns.uplift.costs import COST_BASIS
from common.db.frames import frame_from_queryset
from customers.models import Consent, Customer, Device, DeviceStatus, Order, OrderStatus
from customers.timezones import effective_time_zones

# Customers read per query when building candidate frames: 50,000 rows are ~10 MB in pandas
# and one range scan; bounded memory for any number of customers.
CANDIDATE_CHUNK = 50_000
# Customer value is completed-order revenue over this many days before now.
VALUE_WINDOW_DAYS = 365
# The rule columns (campaigns.rules) that are typed columns of the customer row, by field name:
# rules_prefilter checks conditions on them in SQL too.
SCORE_FIELDS = {TIER: "risk_tier", PROBABILITY: "churn_probability"}


def rules_prefilter(specs: Sequence[RuleSpec]) -> Q:
    """Scored customers that may match a rule, to read less: per rule, its conditions on
    SCORE_FIELDS (tier, probability) through their operators' SQL lookups (campaigns.rules).

    A student segment (campaigns.rules.ModelSegment) is checked here too, on the customer's
    score model version and student leaf. A superset of what the rules match: value,
    attribute and consent conditions are left to campaigns.rules.rule_mask on the frame;
    customers without a score are never candidates.
    """
    scored = Q(churn_probability__isnull=False)
    any_rule = Q(pk__in=[])
    for spec in specs:
        q = Q()
        for condition in spec.conditions:
            field = SCORE_FIELDS.get(condition.column)
            lookup = OPERATORS[condition.operator].lookup
            if field is not None and lookup is not None:
                q &= Q(**{f"{field}__{lookup}": condition.value})
            elif condition.column == SEGMENT:
                segment = condition.value
                q &= Q(score_model_version=segment.model_version, score_student_leaf=segment.leaf)
        if not q:  # a rule without score conditions may match any scored customer
            return scored
        any_rule |= q
    return scored & any_rule


def candidate_id_ranges(*, specs: Sequence[RuleSpec]) -> Iterator[tuple[int, int]]:
    """(first id, last id) of consecutive chunks of scored customers that may match a rule."""
    ids = list(
        Customer.objects.filter(rules_prefilter(specs)).order_by("pk").values_list("pk", flat=True)
    )
    for start in range(0, len(ids), CANDIDATE_CHUNK):
        part = ids[start : start + CANDIDATE_CHUNK]
        yield part[0], part[-1]


def _only(ids: Sequence[int] | None, field: str = "customer_id") -> Q:
    """Only the customers of `ids` when given (a triggered campaign's batch), else no limit."""
    return Q(**{f"{field}__in": list(ids)}) if ids is not None else Q()


def candidates_frame(
    *, specs: Sequence[RuleSpec], id_range: tuple[int, int], ids: Sequence[int] | None = None
) -> pd.DataFrame:
    """Scored customers in an id range that may match a rule, with what rules and the policy
    need: score snapshot, time zone (the country's when none is set), erased, whether
    email/phone/an active push device exist, the attributes the rules read (raw JSON values as
    text)."""
    annotations: dict[str, Any] = {
        attribute_column(key): KeyTextTransform(key, "attributes")
        for key in attribute_fields(specs)
    }
    annotations["has_device"] = Exists(
        Device.objects.filter(customer=OuterRef("pk"), status=DeviceStatus.ACTIVE)
    )
    columns = [
        "customer_id",
        "probability",
        "tier",
        "model_version",
        "student_leaf",
        "time_zone",
        "country",
        "erased",
        "email",
        "phone",
        *annotations,
    ]
    qs = (
        Customer.objects.filter(
            rules_prefilter(specs), _only(ids, "pk"), pk__gte=id_range[0], pk__lte=id_range[1]
        )
        .annotate(**annotations)
        .order_by("pk")
        .values_list(
            "pk",
            "churn_probability",
            "risk_tier",
            "score_model_version",
            "score_student_leaf",
            "time_zone",
            "country",
            "erased",
            "email",
            "phone",
            *annotations,
        )
    )
    frame = frame_from_queryset(qs, columns)
    # Quiet hours: a customer without a time zone is in their country's (customers.timezones).
    frame["time_zone"] = effective_time_zones(frame["time_zone"], frame.pop("country"))
    frame["erased"] = frame["erased"].astype(bool)
    frame["has_email"] = frame.pop("email").fillna("").astype(str).str.len() > 0
    frame["has_phone"] = frame.pop("phone").fillna("").astype(str).str.len() > 0
    frame["has_device"] = frame["has_device"].fillna(False).astype(bool)
    frame["probability"] = frame["probability"].astype(float)
    # The student leaf the latest score fell in, keyed by its model (campaigns.rules.SEGMENT).
    frame[SEGMENT] = segment_keys(frame["model_version"], frame.pop("student_leaf"))
    return frame


def customer_value_frame(
    *, id_range: tuple[int, int], now: datetime, ids: Sequence[int] | None = None
) -> pd.Series:
    """Completed-order revenue per customer over VALUE_WINDOW_DAYS before now (set-based)."""
    qs = (
        Order.objects.filter(
            _only(ids),
            customer_id__gte=id_range[0],
            customer_id__lte=id_range[1],
            status=OrderStatus.COMPLETED,
            placed_at__gt=now - timedelta(days=VALUE_WINDOW_DAYS),
            placed_at__lte=now,
        )
        .values("customer_id")
        .annotate(value=Cast(Sum("amount"), output_field=CharField()))
        .order_by()
        .values_list("customer_id", "value")
    )
    frame = frame_from_queryset(qs, ["customer_id", "value"])
    return frame.set_index("customer_id")["value"].astype(float)


def consents_frame(*, id_range: tuple[int, int], ids: Sequence[int] | None = None) -> pd.DataFrame:
    qs = Consent.objects.filter(
        _only(ids), customer_id__gte=id_range[0], customer_id__lte=id_range[1]
    ).values_list("customer_id", "channel", "status")
    return frame_from_queryset(qs, ["customer_id", "channel", "status"])


def contact_history_frame(
    *, id_range: tuple[int, int], since: datetime, ids: Sequence[int] | None = None
) -> pd.DataFrame:
    """Counted interventions (both arms, every campaign) created since `since`."""
    qs = (
        Intervention.objects.filter(
            _only(ids),
            customer_id__gte=id_range[0],
            customer_id__lte=id_range[1],
            status__in=COUNTED_STATUSES,
            created_at__gte=since,
        )
        .order_by()
        .values_list("customer_id", "campaign_id", "campaign__priority", "channel", "created_at")
    )
    frame = frame_from_queryset(
        qs, ["customer_id", "campaign_id", "priority", "channel", "created_at"]
    )
    if not frame.empty:
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def campaign_usage(*, campaign: Campaign) -> tuple[int, float]:
    """Counted interventions of a campaign so far and their offer cost (for overall budgets)."""
    row = Intervention.objects.filter(campaign=campaign, status__in=COUNTED_STATUSES).aggregate(
        n=Count("pk"), cost=Sum("offer_cost")
    )
    return int(row["n"] or 0), float(row["cost"] or 0)


def campaigns_active(*, now: datetime) -> QuerySet[Campaign]:
    """Active campaigns inside their dates, highest priority first."""
    return (
        Campaign.objects.filter(status=CampaignStatus.ACTIVE)
        .filter(
            Q(starts_at__isnull=True) | Q(starts_at__lte=now),
            Q(ends_at__isnull=True) | Q(ends_at__gt=now),
        )
        .order_by("priority", "pk")
    )


def campaigns_due(*, now: datetime, cycle_key_for: Any) -> list[Campaign]:
    """Active campaigns inside their dates whose current cycle has not run, by priority."""
    due = []
    # Triggered campaigns have no cycles to run: they decide per customer after each rescore.
    for campaign in campaigns_active(now=now).exclude(mode=CampaignMode.TRIGGERED):
        key, _start = cycle_key_for(campaign=campaign, now=now)
        if not CampaignCycle.objects.filter(campaign=campaign, cycle_key=key).exists():
            due.append(campaign)
    return due


def campaign_summary(*, campaign: Campaign) -> dict[str, Any]:
    """Counts per arm x status, per rule x arm, per suppression reason, coupons, the cost so
    far (campaigns.uplift.costs) and the offer budget used."""
    rows = Intervention.objects.filter(campaign=campaign)
    by_status = list(rows.values("arm", "status").annotate(n=Count("pk")).order_by("arm", "status"))
    by_rule = list(
        rows.values("rule__position", "rule__name", "arm")
        .annotate(n=Count("pk"), suppressed=Count("pk", filter=Q(status="suppressed")))
        .order_by("rule__position", "rule__name", "arm")
    )
    by_reason = list(
        rows.exclude(reason="").values("arm", "reason").annotate(n=Count("pk")).order_by("reason")
    )
    sent = rows.filter(arm="treatment", status__in=["sent", "delivered"])
    by_channel = list(sent.values("channel").annotate(n=Count("pk")).order_by("channel"))
    _counted, budget_used = campaign_usage(campaign=campaign)
    return {
        "cycles": list(
            CampaignCycle.objects.filter(campaign=campaign).values(
                "cycle_key", "started_at", "finished_at", "summary"
            )[:20]
        ),
        "by_status": by_status,
        "by_rule": by_rule,
        "by_reason": by_reason,
        "sent_by_channel": by_channel,
        "coupons": Coupon.objects.filter(intervention__campaign=campaign).count(),
        "coupons_redeemed": Coupon.objects.filter(
            intervention__campaign=campaign, redeemed_at__isnull=False
        ).count(),
        # The one definition of cost (campaigns.uplift.costs), as in the uplift report.
        "cost": campaign_cost(campaign=campaign),
        "cost_basis": COST_BASIS,
        # What the budget caps count: the unit cost of every offer made, redeemed or not.
        "budget_used": budget_used,
    }


def customer_coupons(*, customer: Customer) -> QuerySet[Coupon]:
    return (
        Coupon.objects.filter(customer=customer)
        .select_related("offer", "intervention__campaign")
        .order_by("-created_at")
    )


def coupon_by_code(*, code: str) -> Coupon | None:
    return (
        Coupon.objects.filter(code=code.strip().upper())
        .select_related("offer", "customer", "intervention__campaign")
        .first()
    )


def callbacks_for_agent(*, user: Any) -> QuerySet[CallbackTask]:
    """An agent's callbacks still to do, by due time then risk (highest first)."""
    return (
        CallbackTask.objects.filter(assigned_agent=user)
        .exclude(status=CallbackStatus.DONE)
        .select_related("customer", "intervention__offer", "intervention__campaign")
        .order_by("due_at", "-intervention__churn_probability")
    )


def campaign_by_key_or_id(reference: str) -> Campaign | None:
    """The campaign named by its key (e.g. "win-back") or, for digits, its numeric id (keys are
    never only digits, so the two cannot be confused)."""
    if reference.isdigit():
        return Campaign.objects.filter(pk=int(reference)).first()
    return Campaign.objects.filter(key=reference).first()


def outbox_waiting_count() -> int:
    """Treatment messages still waiting in the outbox (pending, scheduled for after quiet hours,
    or claimed by a relay), as the cycle's relay stage reports them."""
    return Intervention.objects.filter(
        status__in=[
            InterventionStatus.PENDING,
            InterventionStatus.SCHEDULED,
            InterventionStatus.SENDING,
        ]
    ).count()


def uplift_model_champion(*, campaign: Campaign) -> UpliftModel | None:
    """The uplift model the campaign's policy uses, None when it has none."""
    return UpliftModel.objects.filter(campaign=campaign, status=UpliftModelStatus.CHAMPION).first()
