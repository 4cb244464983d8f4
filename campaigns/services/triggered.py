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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
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


def campaign_trigger(
    *, campaign: Campaign, customer_ids: Sequence[int], now: datetime
) -> list[TriggeredEntry]:
    """Decide `campaign` for a batch of just-rescored customers now and record the entries of
    those who match and have not entered within the re-entry window.

    One transaction that first locks the customers' rows, so two rescores of one customer at
    once decide one after the other (the second sees the first's entry)."""
    started = time.perf_counter()
    ids = sorted({int(i) for i in customer_ids})

    def entries(outcome: str, who: Iterable[int], **extra: Any) -> list[TriggeredEntry]:
        seconds = round(time.perf_counter() - started, 4)
        return [
            TriggeredEntry(campaign.pk, campaign.name, c, outcome, seconds=seconds, **extra)
            for c in who
        ]

    with transaction.atomic():
        list(Customer.objects.select_for_update().filter(pk__in=ids).values_list("pk"))
        since = now - timedelta(days=max(int(campaign.reentry_days), 1))
        cycle = _window_cycle(campaign=campaign, now=now)
        entered = set(
            Intervention.objects.filter(campaign=campaign, customer_id__in=ids)
            .filter(Q(cycle=cycle) | Q(created_at__gt=since))
            .values_list("customer_id", flat=True)
        )
        result = entries("already_entered", sorted(entered))
        fresh = [c for c in ids if c not in entered]
        # cycle_start=now: "taken this cycle by a higher-priority campaign" means at this very
        # moment for a triggered campaign; cooldown and frequency caps apply as usual.
        plan = campaign_plan(campaign=campaign, now=now, cycle_start=now, customer_ids=fresh)
        decided = plan.decisions
        matched = set() if decided.empty else {int(c) for c in decided["customer_id"]}
        result += entries("no_match", [c for c in fresh if c not in matched])
        if decided.empty:
            return result
        inserted = interventions_write(campaign=campaign, cycle=cycle, plan=plan, now=now)
        _summary_add(cycle, decision_counts(decided), coupons=inserted[1])
        for row in decided.itertuples(index=False):
            result += entries(
                "entered",
                [int(row.customer_id)],
                arm="control" if bool(row.is_control) else "treatment",
                status=str(row.status),
                reason=str(row.reason),
            )
        return result


def campaigns_trigger(*, customer_ids: Sequence[int], now: datetime) -> list[TriggeredEntry]:
    """Every active triggered campaign, highest priority first, for a batch of customers."""
    campaigns = selectors.campaigns_active(now=now).filter(mode=CampaignMode.TRIGGERED)
    return [
        entry
        for campaign in campaigns
        for entry in campaign_trigger(campaign=campaign, customer_ids=customer_ids, now=now)
    ]
