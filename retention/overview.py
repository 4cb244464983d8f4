"""The admin's landing page: one look at the whole service — the score distribution and tier
sizes of the latest scoring run, the model in use with its validation figures and drift, the
active campaigns with their latest uplift and interval, and when each stage of the cycle last
ran, with links into each page.

It composes reads from scoring and campaigns, so it lives at the top floor (retention). Each
section is shown only to a user allowed to open the page it links to (no link to a 403)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from campaigns.measurement.snapshots import program_report_latest, uplift_report_latest
from campaigns.models import Campaign, CampaignCycle, UpliftReport
from campaigns.selectors import campaigns_active
from campaigns.uplift.report import CampaignUpliftReport
from common.svg import Bar, bar_chart
from scoring.ml.drift import drift_guidance
from scoring.ml.tiers import NOT_SCORABLE
from scoring.models import ScoringRun
from scoring.selectors import (
    churn_model_active,
    risk_tier_rules,
    score_histogram,
    scoring_run_latest,
)

HISTOGRAM_BINS = 20


@dataclass(frozen=True)
class CampaignLine:
    campaign: Campaign
    report: UpliftReport | None
    figures: CampaignUpliftReport | None
    uplift_url: str


@dataclass(frozen=True)
class StageLine:
    stage: str
    finished_at: datetime | None
    seconds: float | None
    detail: str
    url: str | None


def _took(started: datetime | None, finished: datetime | None) -> float | None:
    return (finished - started).total_seconds() if started and finished else None


def _can_view(request: HttpRequest, app_label: str, model: str) -> bool:
    return request.user.has_perm(f"{app_label}.view_{model}")


def _scores_section(run: ScoringRun | None) -> dict[str, Any]:
    if run is None:
        return {}
    counts = score_histogram(run=run, bins=HISTOGRAM_BINS)
    width = 100 // HISTOGRAM_BINS
    bars = [
        Bar(label=f"{i * width}–{(i + 1) * width}%", value=float(n)) for i, n in enumerate(counts)
    ]
    order = [rule.name for rule in risk_tier_rules()] + [NOT_SCORABLE]
    tiers = run.tier_counts or {}
    total = sum(tiers.values()) or 1
    tier_rows = [
        (name.replace("_", " ").capitalize(), tiers.get(name, 0), tiers.get(name, 0) / total)
        for name in order + sorted(set(tiers) - set(order))
        if name != NOT_SCORABLE or tiers.get(name)
    ]
    return {
        "run": run,
        "histogram_svg": bar_chart(
            bars,
            title="Customers by churn probability (latest run)",
            value_label="customers",
            value_format=",.0f",
            chart_id="score-histogram",
            width=520,
        ),
        "tier_rows": tier_rows,
        "drift_status": (run.drift or {}).get("status", ""),
        "drift_guidance": drift_guidance((run.drift or {}).get("status")),
    }


def _campaign_lines() -> list[CampaignLine]:
    lines = []
    for campaign in campaigns_active(now=timezone.now()).order_by("name"):
        report = uplift_report_latest(campaign=campaign)
        figures = CampaignUpliftReport.from_json(report.figures) if report else None
        lines.append(
            CampaignLine(
                campaign=campaign,
                report=report,
                figures=figures,
                uplift_url=reverse("admin:campaigns_campaign_uplift", args=[campaign.pk]),
            )
        )
    return lines


def _stage_lines(run: ScoringRun | None) -> list[StageLine]:
    stages = []
    if run is not None:
        stages.append(
            StageLine(
                "Scoring",
                run.finished_at,
                _took(run.started_at, run.finished_at),
                f"{run.customers_scored:,} customers scored ({run.run_key})",
                reverse("admin:scoring_scoringrun_change", args=[run.pk]),
            )
        )
    cycle = CampaignCycle.objects.select_related("campaign").order_by("-started_at").first()
    if cycle is not None:
        stages.append(
            StageLine(
                "Dispatch",
                cycle.finished_at,
                # Its own timing: a cycle's start is the time it dispatches as of, which a
                # back-dated run (the demo, a replay) sets in the past.
                (cycle.summary or {}).get("seconds"),
                f"{cycle.campaign.name}, cycle {cycle.cycle_key}: "
                f"{(cycle.summary or {}).get('treatment', 0):,} treatment, "
                f"{(cycle.summary or {}).get('control', 0):,} control",
                reverse("admin:campaigns_campaign_summary", args=[cycle.campaign_id]),
            )
        )
    report = UpliftReport.objects.order_by("-measured_at").first()
    if report is not None:
        stages.append(
            StageLine(
                "Uplift snapshot",
                report.updated_at,
                report.seconds,
                f"{report.get_kind_display()}, {report.get_status_display().lower()}",
                None,
            )
        )
    return stages


def _cycle_run_section() -> dict[str, Any] | None:
    """The latest cycle run: its state and each stage's chunks, rows and seconds, in words."""
    from retention.cycle_runs import cycle_run_latest
    from retention.models import CycleStatus, StageState

    run = cycle_run_latest()
    if run is None:
        return None
    return {
        "run": run,
        "status": run.get_status_display().lower(),
        "mode": run.get_mode_display().lower(),
        "running": run.status == CycleStatus.RUNNING,
        "took": _took(run.started_at, run.finished_at),
        "stages": [
            {
                "name": s["name"].capitalize(),
                "state": StageState(s["state"]).label,
                "chunks_done": len(s["done"]),
                "chunks_total": s["chunks_total"],
                "rows": s["rows"],
                "seconds": s["seconds"],
            }
            for s in run.stages
        ],
    }


def overview_view(request: HttpRequest) -> HttpResponse:
    """GET /admin/: the overview (every model stays one click away in the sidebar)."""
    show_scores = _can_view(request, "scoring", "customerscore")
    show_campaigns = _can_view(request, "campaigns", "campaign")
    run = scoring_run_latest() if show_scores else None
    model = churn_model_active() if _can_view(request, "scoring", "churnmodel") else None
    program = program_report_latest() if show_campaigns else None
    context = {
        **admin.site.each_context(request),
        "title": "Overview",
        "show_scores": show_scores,
        "show_campaigns": show_campaigns,
        "scores": _scores_section(run),
        "model": model,
        "model_url": (
            reverse("admin:scoring_churnmodel_change", args=[model.pk]) if model else None
        ),
        "campaigns": _campaign_lines() if show_campaigns else [],
        "program": program,
        "stages": _stage_lines(run) if (show_scores and show_campaigns) else [],
        "cycle_run": _cycle_run_section() if (show_scores and show_campaigns) else None,
    }
    return TemplateResponse(request, "admin/overview.html", context)
