"""Dispatch: run a campaign cycle — record the plan's interventions (treatment ones `pending` or
`scheduled`: the outbox that campaigns.services.relay delivers) and coupons, and summarise it.

One transaction per cycle, guarded by a unique CampaignCycle row; the rows are written with one
INSERT ... ON CONFLICT DO NOTHING, so a re-run or a retried task records nothing twice.
"""

from __future__ import annotations

import base64
import secrets
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns import selectors
from campaigns.models import (
    Arm,
    Campaign,
    CampaignCycle,
    Coupon,
    Intervention,
    InterventionStatus,
    Rule,
    Selection,
)
from campaigns.services.plan import CampaignPlan, RuleAudience, campaign_plan, rules_audience
from common.db.bulk import bulk_insert_ignore, tables_analyze

# Weekly cycles start on Mondays 00:00 UTC: cycle boundaries count from this Monday.
CYCLE_ANCHOR = datetime(2024, 1, 1, tzinfo=UTC)


def campaign_cycle_key(*, campaign: Campaign, now: datetime) -> tuple[str, datetime]:
    """The key and UTC start of the cycle `now` falls in, given the campaign's cadence."""
    minutes = int((now - CYCLE_ANCHOR).total_seconds() // 60)
    start = CYCLE_ANCHOR + timedelta(minutes=minutes - minutes % int(campaign.cadence_minutes))
    return start.strftime("%Y%m%dT%H%M"), start


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
    targeting: str = "rules"
    # Uplift policy: the model, budget, spend, candidates and what it expects against risk
    # targeting; or, in policy mode without a champion, why the cycle used the rules.
    policy: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **changes: Any) -> DispatchSummary:
        """A summary stored as JSON (CampaignCycle.summary, which may hold more keys, e.g. a
        reference effect), with `changes` applied."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{**{k: v for k, v in data.items() if k in known}, **changes})


# --- the summary -----------------------------------------------------------------------------


def _rule_label(rule: Rule) -> str:
    return f"{rule.position}. {rule.name}"


def _rule_entries(plan: CampaignPlan) -> list[dict[str, Any]]:
    """Per rule and arm: matched, taken, suppressed by reason and (treatment) offer cost."""
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
    return per_rule


def decision_counts(d: pd.DataFrame) -> dict[str, Any]:
    """The counts of a plan's decisions (one row each): arms, statuses, suppression reasons
    (overall and per arm), treatment to deliver per channel and its offer cost."""
    treated = d.loc[~d["is_control"]]
    suppressed = d.loc[d["reason"].ne("")]
    taken = treated.loc[treated["reason"].eq("")]
    return {
        "eligible": len(d),
        "treatment": len(treated),
        "control": int(d["is_control"].sum()),
        "pending": int(d["status"].eq(InterventionStatus.PENDING).sum()),
        "scheduled": int(d["status"].eq(InterventionStatus.SCHEDULED).sum()),
        "held_out": int(d["status"].eq(InterventionStatus.HELD_OUT).sum()),
        "suppressed": {str(k): int(v) for k, v in Counter(suppressed["reason"]).items()},
        "per_arm_suppressed": {
            arm: {
                str(k): int(v)
                for k, v in Counter(
                    suppressed.loc[suppressed["is_control"].eq(c), "reason"]
                ).items()
            }
            for arm, c in (("treatment", False), ("control", True))
        },
        "per_channel": {str(k): int(v) for k, v in Counter(taken["channel"]).items()},
        "offer_cost": round(float(taken["offer_cost"].sum()), 2),
    }


def _summarise(
    *, campaign: Campaign, plan: CampaignPlan, cycle_key: str, written: bool, coupons: int
) -> DispatchSummary:
    d = plan.decisions
    counts = _empty_counts(None) if d.empty else decision_counts(d)
    return DispatchSummary(
        campaign_id=campaign.pk,
        campaign=campaign.name,
        cycle_key=cycle_key,
        written=written,
        already_ran=False,
        **{**counts, "per_rule": _rule_entries(plan), "coupons": coupons},
        targeting=plan.targeting,
        policy=plan.policy,
    )


def _empty_counts(summary: dict[str, Any] | None) -> dict[str, Any]:
    """Zero counts for a cycle that matched nobody, and defaults for a guard row without a
    summary (it never lacks one once committed)."""
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


def campaign_preview(*, campaign: Campaign, now: datetime) -> DispatchSummary:
    """What dispatching now would do — per rule and arm, taken, suppressed by reason, offer
    cost — without writing anything."""
    started = time.perf_counter()
    key, start = campaign_cycle_key(campaign=campaign, now=now)
    plan = campaign_plan(campaign=campaign, now=now, cycle_start=start)
    summary = _summarise(campaign=campaign, plan=plan, cycle_key=key, written=False, coupons=0)
    return replace(summary, seconds=round(time.perf_counter() - started, 3))


def campaign_eligible_now(*, campaign: Campaign, now: datetime) -> tuple[int, str]:
    """Customers one cycle would take now (both arms) — the preview's "eligible", so the holdout
    planner and the preview never disagree — and where the number comes from."""
    if not campaign.rules.exists():
        return 0, "no rules yet"
    return campaign_preview(campaign=campaign, now=now).eligible, "eligible now, as in the preview"


def campaign_rules_audience(
    *, campaign: Campaign, rules: list[Rule], now: datetime
) -> list[RuleAudience]:
    """Per rule — saved or still being edited — what it would take if dispatched now."""
    _key, start = campaign_cycle_key(campaign=campaign, now=now)
    return rules_audience(campaign=campaign, rules=rules, now=now, cycle_start=start)


# --- the record: interventions (the outbox) and coupons ---------------------------------------


def _coupon_codes(count: int) -> list[str]:
    """`count` unguessable codes of 80 random bits (secrets), as XXXX-XXXX-XXXX-XXXX base32."""
    raw = base64.b32encode(secrets.token_bytes(10 * count)).decode()
    # 10 bytes encode to exactly 16 base32 characters, so slicing keeps each code independent.
    return [
        f"{raw[i : i + 4]}-{raw[i + 4 : i + 8]}-{raw[i + 8 : i + 12]}-{raw[i + 12 : i + 16]}"
        for i in range(0, 16 * count, 16)
    ]


def coupon_code_example() -> str:
    """A code in the format dispatch issues, for previews (never stored, never valid)."""
    return _coupon_codes(1)[0]


def _intervention_rows(
    *, campaign: Campaign, cycle: CampaignCycle, plan: CampaignPlan, now: datetime
) -> pd.DataFrame:
    """One Intervention row (field attnames) per decision of the plan."""
    d = plan.decisions
    rule_ids = np.array([r.pk for r in plan.rules])
    offer_ids = pd.array([r.offer_id for r in plan.rules], dtype="Int64")
    template_ids = pd.array([r.template_id for r in plan.rules], dtype="Int64")
    fallback_template_ids = pd.array([r.fallback_template_id for r in plan.rules], dtype="Int64")
    ri = d["rule_index"].to_numpy()
    fell_back = d["fell_back"].to_numpy(dtype=bool)
    template_of = pd.array(
        np.where(fell_back, fallback_template_ids[ri], template_ids[ri]), dtype="Int64"
    )
    return pd.DataFrame(
        {
            "campaign_id": campaign.pk,
            "cycle_id": cycle.pk,
            "rule_id": rule_ids[ri],
            "customer_id": d["customer_id"].to_numpy(),
            "arm": np.where(d["is_control"].to_numpy(), Arm.CONTROL, Arm.TREATMENT),
            "channel": d["channel"].to_numpy(),
            "offer_id": offer_ids[ri],
            "template_id": template_of,
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
            "fell_back": fell_back,
            "selection": d["selection"].to_numpy() if "selection" in d else Selection.RULE.value,
            "predicted_uplift": d["predicted_uplift"].to_numpy(dtype=float)
            if "predicted_uplift" in d
            else np.nan,
            "expected_increment": d["expected_increment"].to_numpy(dtype=float)
            if "expected_increment" in d
            else np.nan,
            "created_at": now,
            "updated_at": now,
        }
    )


def _coupons_write(
    *, plan: CampaignPlan, rows: pd.DataFrame, inserted: list[tuple[Any, ...]], now: datetime
) -> int:
    """Coupons for the inserted treated customers that may be contacted (pending or scheduled)
    under a rule whose offer issues one; returns how many were created."""
    ids = pd.DataFrame(inserted, columns=["intervention_id", "customer_id"])
    rows = rows.merge(ids, on="customer_id")
    coupon_offers = {r.offer_id: r.offer for r in plan.rules if r.offer and r.offer.issues_coupon}
    wanted = rows.loc[
        rows["arm"].eq(Arm.TREATMENT)
        & rows["status"].isin([InterventionStatus.PENDING, InterventionStatus.SCHEDULED])
        & rows["offer_id"].isin(list(coupon_offers))
    ]
    if wanted.empty:
        return 0
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
    return len(bulk_insert_ignore(Coupon, coupons, returning=("id",)))


def interventions_write(
    *, campaign: Campaign, cycle: CampaignCycle, plan: CampaignPlan, now: datetime
) -> tuple[int, int]:
    """Insert the plan's interventions and the treated customers' coupons; (created, coupons)."""
    if plan.decisions.empty:
        return 0, 0
    rows = _intervention_rows(campaign=campaign, cycle=cycle, plan=plan, now=now)
    inserted = bulk_insert_ignore(Intervention, rows, returning=("id", "customer_id"))
    if not inserted:
        return 0, 0
    return len(inserted), _coupons_write(plan=plan, rows=rows, inserted=inserted, now=now)


def campaign_dispatch(*, campaign: Campaign, now: datetime) -> DispatchSummary:
    """Run one cycle of a campaign: decide and record every matching customer's intervention.

    One transaction: the cycle guard row (unique per campaign and cycle key), the interventions
    (treatment ones `pending`/`scheduled`: the outbox) and the coupons. A second call for the
    same cycle returns the first one's summary and writes nothing.
    """
    started = time.perf_counter()
    key, start = campaign_cycle_key(campaign=campaign, now=now)
    if campaign.is_triggered:  # it decides per customer after each rescore (triggered.py)
        return _summarise(
            campaign=campaign,
            plan=CampaignPlan(pd.DataFrame(), []),
            cycle_key=key,
            written=False,
            coupons=0,
        )
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
        plan = campaign_plan(campaign=campaign, now=now, cycle_start=start)
        if plan.decisions.empty:
            # Nothing matched (e.g. no scores yet): release the guard so a run later in this
            # cycle, after scoring, can still dispatch.
            cycle.delete()
            return _summarise(campaign=campaign, plan=plan, cycle_key=key, written=False, coupons=0)
        cycle.targeting, cycle.uplift_model = plan.targeting, plan.uplift_model
        created, coupons = interventions_write(campaign=campaign, cycle=cycle, plan=plan, now=now)
        summary = replace(
            _summarise(campaign=campaign, plan=plan, cycle_key=key, written=True, coupons=coupons),
            interventions_created=created,
            seconds=round(time.perf_counter() - started, 3),
        )
        cycle.summary = asdict(summary)
        cycle.finished_at = timezone.now()
        cycle.save(update_fields=["summary", "finished_at", "targeting", "uplift_model"])
    tables_analyze(Intervention, Coupon, grew_by=created)  # the relay's claims read them next
    return summary


def campaigns_dispatch_due(*, now: datetime) -> list[DispatchSummary]:
    """Dispatch every active campaign whose current cycle has not run, highest priority first
    (so a lower-priority campaign sees what a higher one took this cycle)."""
    return [
        campaign_dispatch(campaign=campaign, now=now)
        for campaign in selectors.campaigns_due(now=now, cycle_key_for=campaign_cycle_key)
    ]
