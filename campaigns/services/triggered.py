"""Triggered campaigns (issue 14, docs/realtime.md): right after an event rescored a customer,
every active triggered campaign decides for that one customer — the scheduled dispatch's own
plan (campaigns.services.plan over the id range [id, id]: same rules, deterministic holdout,
suppression policy and budgets) and its own writes (dispatch.interventions_write) — and the
treatment message leaves through the same outbox relay.

A triggered campaign's "cycle" is its re-entry window: the CampaignCycle of the window of
`reentry_days` the moment falls in (windows counted from the dispatch's CYCLE_ANCHOR), so the
unique (campaign, cycle, customer) row guards one entry per window even against two rescores
at once; a customer who entered less than `reentry_days` ago (in the previous window) is not
considered either. A customer who does not match now is not recorded: a later rescore that
matches may still enter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from campaigns import selectors
from campaigns.models import Campaign, CampaignCycle, CampaignMode, Intervention
from campaigns.services.dispatch import CYCLE_ANCHOR, decision_counts, interventions_write
from campaigns.services.plan import campaign_plan
from customers.models import Customer

# The counts a window's summary adds up, entry after entry.
_SUMMED = ("eligible", "treatment", "control", "pending", "scheduled", "held_out", "coupons")


@dataclass(frozen=True)
class TriggeredEntry:
    """One triggered campaign's decision for one customer."""

    campaign_id: int
    campaign: str
    customer_id: int
    outcome: str  # entered | no_match | already_entered
    arm: str = ""
    status: str = ""
    reason: str = ""
    seconds: float = 0.0


def reentry_window(*, campaign: Campaign, now: datetime) -> tuple[str, datetime]:
    """The key (prefixed "w", YYYYmmdd of its start) and UTC start of the re-entry window
    `now` falls in."""
    days = max(int(campaign.reentry_days), 1)
    elapsed = (now - CYCLE_ANCHOR).days
    start = CYCLE_ANCHOR + timedelta(days=elapsed - elapsed % days)
    return f"w{start:%Y%m%d}-{days}d", start


def _window_cycle(*, campaign: Campaign, now: datetime) -> CampaignCycle:
    key, start = reentry_window(campaign=campaign, now=now)
    cycle = CampaignCycle.objects.filter(campaign=campaign, cycle_key=key).first()
    if cycle is not None:
        return cycle
    try:
        with transaction.atomic():
            return CampaignCycle.objects.create(campaign=campaign, cycle_key=key, started_at=start)
    except IntegrityError:  # another worker opened the window first
        return CampaignCycle.objects.get(campaign=campaign, cycle_key=key)


def _summary_add(cycle: CampaignCycle, counts: dict[str, Any], *, coupons: int) -> None:
    """Add one entry's counts to the window's summary (the campaign page reads it)."""
    summary = dict(cycle.summary or {})
    for name in _SUMMED:
        summary[name] = int(summary.get(name, 0)) + int(
            coupons if name == "coupons" else counts.get(name, 0)
        )
    for name in ("suppressed", "per_channel"):
        merged = dict(summary.get(name) or {})
        for key, n in (counts.get(name) or {}).items():
            merged[key] = int(merged.get(key, 0)) + int(n)
        summary[name] = merged
    summary.update(campaign_id=cycle.campaign_id, cycle_key=cycle.cycle_key, written=True)
    cycle.summary = summary
    cycle.finished_at = timezone.now()
    cycle.save(update_fields=["summary", "finished_at"])


def campaign_trigger(*, campaign: Campaign, customer_id: int, now: datetime) -> TriggeredEntry:
    """Decide `campaign` for one customer now and record the entry if they match.

    One transaction that first locks the customer's row, so two rescores of one customer at
    once decide one after the other (the second sees the first's entry)."""
    started = time.perf_counter()

    def entry(outcome: str, **extra: Any) -> TriggeredEntry:
        return TriggeredEntry(
            campaign.pk,
            campaign.name,
            customer_id,
            outcome,
            seconds=round(time.perf_counter() - started, 4),
            **extra,
        )

    with transaction.atomic():
        Customer.objects.select_for_update().filter(pk=customer_id).exists()
        since = now - timedelta(days=max(int(campaign.reentry_days), 1))
        cycle = _window_cycle(campaign=campaign, now=now)
        entered = Intervention.objects.filter(campaign=campaign, customer_id=customer_id)
        if entered.filter(cycle=cycle).exists() or entered.filter(created_at__gt=since).exists():
            return entry("already_entered")
        # cycle_start=now: "taken this cycle by a higher-priority campaign" means at this very
        # moment for a triggered campaign; cooldown and frequency caps apply as usual.
        plan = campaign_plan(
            campaign=campaign, now=now, cycle_start=now, id_range=(customer_id, customer_id)
        )
        if plan.decisions.empty:
            return entry("no_match")
        created, coupons = interventions_write(campaign=campaign, cycle=cycle, plan=plan, now=now)
        if not created:
            return entry("already_entered")
        _summary_add(cycle, decision_counts(plan.decisions), coupons=coupons)
        row = plan.decisions.iloc[0]
        return entry(
            "entered",
            arm="control" if bool(row["is_control"]) else "treatment",
            status=str(row["status"]),
            reason=str(row["reason"]),
        )


def campaigns_trigger(*, customer_id: int, now: datetime) -> list[TriggeredEntry]:
    """Every active triggered campaign, highest priority first, for one customer."""
    campaigns = selectors.campaigns_active(now=now).filter(mode=CampaignMode.TRIGGERED)
    return [
        campaign_trigger(campaign=campaign, customer_id=customer_id, now=now)
        for campaign in campaigns
    ]
