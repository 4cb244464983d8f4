"""Uplift reports and their daily snapshots: measure a campaign, a cycle or the whole program
(SQL outcome cells in, the typed report of campaigns.uplift.report out) and store, refresh and
read the UpliftReport rows.

One UpliftReport per scope and day (a unique constraint): a rerun the same day updates it, and
a cycle's final snapshot never changes, so the nightly refresh skips it.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from campaigns.measurement.outcomes import (
    ANALYSIS_POPULATION,
    PROGRAM_WINDOW_DAYS,
    campaign_outcome_cells,
    program_outcome_groups,
)
from campaigns.models import (
    Campaign,
    CampaignCycle,
    Intervention,
    ReportKind,
    ReportStatus,
    Rule,
    UpliftReport,
)
from campaigns.uplift.report import (
    CampaignInfo,
    CampaignUpliftReport,
    CycleInfo,
    ProgramUpliftReport,
    ReferenceEffect,
    campaign_report,
    program_report,
)

# The key of CampaignCycle.summary that holds a cycle's ReferenceEffect (its to_json()).
REFERENCE_EFFECT_KEY = "reference_effect"


def campaign_cycle_reference_attach(*, cycle: CampaignCycle, effect: ReferenceEffect) -> None:
    """Attach an effect known from outside the measurement to a cycle (the demo's simulator
    attaches its true effect): its reports show it beside their estimate. Replaces any earlier
    one; the rest of the cycle's summary is kept."""
    with transaction.atomic():
        summary = (
            CampaignCycle.objects.select_for_update()
            .values_list("summary", flat=True)
            .get(pk=cycle.pk)
        )
        summary = {**(summary or {}), REFERENCE_EFFECT_KEY: effect.to_json()}
        CampaignCycle.objects.filter(pk=cycle.pk).update(summary=summary)
    cycle.summary = summary


def _excluded(*, campaign: Campaign, cycle: CampaignCycle | None) -> dict[str, int]:
    """The interventions left out of the comparison, per "arm:reason" (or status)."""
    scope = Intervention.objects.filter(campaign=campaign)
    if cycle is not None:
        scope = scope.filter(cycle=cycle)
    return {
        f"{row['arm']}:{row['reason'] or row['status']}": row["n"]
        for row in scope.exclude(ANALYSIS_POPULATION)
        .values("arm", "reason", "status")
        .annotate(n=Count("pk"))
        .order_by()
    }


def _reference_effect(cycles: list[CampaignCycle]) -> ReferenceEffect | None:
    return ReferenceEffect.combined(
        [
            ReferenceEffect.from_json(c.summary[REFERENCE_EFFECT_KEY])
            for c in cycles
            if (c.summary or {}).get(REFERENCE_EFFECT_KEY)
        ]
    )


def campaign_uplift(
    *, campaign: Campaign, cycle: CampaignCycle | None = None, now: datetime | None = None
) -> CampaignUpliftReport:
    """What a campaign (or one of its cycles) changed, measured now: see campaign_report."""
    started = time.perf_counter()
    now = now or timezone.now()
    frame = campaign_outcome_cells(campaign=campaign, cycle=cycle)
    cycles = [cycle] if cycle is not None else list(campaign.cycles.order_by("started_at"))
    report = campaign_report(
        frame=frame,
        campaign=CampaignInfo(
            id=campaign.pk,
            name=campaign.name,
            control_percentage=float(campaign.control_percentage),
            attribution_window_days=int(campaign.attribution_window_days),
        ),
        cycle=None if cycle is None else CycleInfo(id=cycle.pk, cycle_key=cycle.cycle_key),
        measured_at=now,
        excluded=_excluded(campaign=campaign, cycle=cycle),
        reference_effect=_reference_effect(cycles),
        rule_labels={
            r.pk: f"{r.position}. {r.name}" for r in Rule.objects.filter(campaign=campaign)
        },
        cycle_labels={c.pk: c.cycle_key for c in cycles},
        message_costs=dict(settings.CAMPAIGN_MESSAGE_COST),
        cycle_targeting={c.pk: c.targeting for c in cycles},
    )
    return replace(report, seconds=round(time.perf_counter() - started, 3))


def program_uplift(
    *, now: datetime | None = None, since: datetime | None = None
) -> ProgramUpliftReport:
    """The global control group against everyone else among the customers any campaign matched
    (since `since`). Customers no campaign matched are left out: both groups receive nothing
    there, so they would only dilute the contrast."""
    started = time.perf_counter()
    now = now or timezone.now()
    report = program_report(
        groups=program_outcome_groups(since=since),
        global_control_percent=float(settings.GLOBAL_CONTROL_PERCENT),
        window_days=PROGRAM_WINDOW_DAYS,
        measured_at=now,
        since=since,
    )
    if report.status == ReportStatus.EMPTY:
        return report
    return replace(report, seconds=round(time.perf_counter() - started, 3))


def _snapshot(
    *,
    kind: str,
    scope_key: str,
    report: CampaignUpliftReport | ProgramUpliftReport,
    now: datetime,
    campaign: Campaign | None = None,
    cycle: CampaignCycle | None = None,
) -> UpliftReport:
    values = {
        "kind": kind,
        "campaign": campaign,
        "cycle": cycle,
        "measured_at": now,
        "status": report.status,
        "figures": report.to_json(),
        "seconds": report.seconds,
    }
    for _attempt in range(2):  # two concurrent first snapshots of a day: the loser updates
        try:
            with transaction.atomic():
                row, _ = UpliftReport.objects.update_or_create(
                    scope_key=scope_key, report_date=now.date(), defaults=values
                )
            return row
        except IntegrityError:
            continue
    raise RuntimeError(f"could not store the uplift report {scope_key}")


def uplift_report_compute(
    *, campaign: Campaign, cycle: CampaignCycle | None = None, now: datetime | None = None
) -> UpliftReport:
    """Compute and store today's snapshot of a campaign's (or one cycle's) uplift."""
    now = now or timezone.now()
    kind, scope_key = (
        (ReportKind.CAMPAIGN, f"campaign-{campaign.pk}")
        if cycle is None
        else (ReportKind.CYCLE, f"cycle-{cycle.pk}")
    )
    return _snapshot(
        kind=kind,
        scope_key=scope_key,
        report=campaign_uplift(campaign=campaign, cycle=cycle, now=now),
        now=now,
        campaign=campaign,
        cycle=cycle,
    )


def program_report_compute(*, now: datetime | None = None) -> UpliftReport:
    now = now or timezone.now()
    return _snapshot(
        kind=ReportKind.PROGRAM, scope_key="program", report=program_uplift(now=now), now=now
    )


def uplift_reports_refresh(*, now: datetime | None = None) -> list[UpliftReport]:
    """The nightly run: every campaign that has interventions, each of its cycles that has no
    final snapshot yet (a final one never changes), and the program report."""
    now = now or timezone.now()
    reports: list[UpliftReport] = []
    for campaign in Campaign.objects.filter(interventions__isnull=False).distinct():
        reports.append(uplift_report_compute(campaign=campaign, now=now))
        finished = UpliftReport.objects.filter(
            kind=ReportKind.CYCLE, status=ReportStatus.FINAL, campaign=campaign
        ).values_list("cycle_id", flat=True)
        for cycle in (
            campaign.cycles.exclude(pk__in=list(finished))
            .filter(interventions__isnull=False)
            .distinct()
        ):
            reports.append(uplift_report_compute(campaign=campaign, cycle=cycle, now=now))
    reports.append(program_report_compute(now=now))
    return reports


def uplift_report_latest(*, campaign: Campaign) -> UpliftReport | None:
    return (
        UpliftReport.objects.filter(scope_key=f"campaign-{campaign.pk}")
        .order_by("-report_date", "-updated_at")
        .first()
    )


def program_report_latest() -> UpliftReport | None:
    return UpliftReport.objects.filter(scope_key="program").order_by("-report_date").first()
