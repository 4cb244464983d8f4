"""The admin's uplift pages, as the base of CampaignAdmin (campaigns/admin.py): a campaign's
uplift report (figures, charts, CSV export, recompute), the program report (global control),
the holdout planner on the campaign form and the "compute uplift" action. The pages read the
typed report (campaigns.uplift.report); the charts are common.svg's."""

from __future__ import annotations

from collections.abc import Sequence

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from campaigns.measurement import snapshots
from campaigns.measurement.export import interventions_outcomes_csv
from campaigns.models import Campaign, UpliftReport
from campaigns.money import currency
from campaigns.services.dispatch import campaign_eligible_now
from campaigns.uplift.breakdown import ArmFigures, GroupUplift
from campaigns.uplift.power import control_percent_for_effect, minimum_detectable_effect
from campaigns.uplift.report import TARGETING_LABELS, CampaignUpliftReport, ProgramUpliftReport
from common.svg import Bar, Interval, bar_chart, interval_chart, line_chart

# Planner defaults when a campaign has no measured control rate yet: a 20% baseline retention
# in the window and target differences of 2 and 5 percentage points.
PLANNING_BASELINE_RATE = 0.20
PLANNING_TARGET_EFFECTS = (0.02, 0.05)


class UpliftReportPages(admin.ModelAdmin):
    """CampaignAdmin's uplift views and planner (its get_urls routes them)."""

    @admin.display(description="Holdout planner")
    def holdout_planner(self, campaign: Campaign) -> SafeString:
        """MDE at 80% power for this control percentage, and the holdout a target needs."""
        if campaign.pk is None:
            return format_html("<em>{}</em>", "Save the campaign (with rules) to plan its holdout.")
        audience, source = campaign_eligible_now(campaign=campaign, now=timezone.now())
        report = snapshots.uplift_report_latest(campaign=campaign)
        overall = CampaignUpliftReport.from_json(report.figures).overall if report else None
        control_rate = overall.control.rate if overall else None
        baseline = control_rate if control_rate and 0 < control_rate < 1 else PLANNING_BASELINE_RATE
        baseline_source = "measured control rate" if baseline == control_rate else "assumed"
        percent = float(campaign.control_percentage)
        if audience < 2 or not 0 < percent < 100:
            return format_html(
                "<em>{}</em>",
                f"Audience {audience:,} ({source}), control {percent:g}%: nothing to plan.",
            )
        mde = minimum_detectable_effect(
            audience_size=audience, baseline_rate=baseline, control_percent=percent
        )
        targets = []
        for effect in PLANNING_TARGET_EFFECTS:
            need = control_percent_for_effect(
                audience_size=audience, baseline_rate=baseline, target_effect=effect
            )
            targets.append(
                (
                    f"{effect * 100:g} pp",
                    f"{need.control_percent:.1f}% control ({need.control_n:,} customers)"
                    if need
                    else "not detectable even with a 50/50 split",
                )
            )
        return format_html(
            '<div class="holdout-planner">With about <strong>{}</strong> customers per cycle '
            "({}), a baseline retention of {} ({}) and {}% held out, the smallest difference "
            "this campaign can detect (80% power, 5% two-sided) is "
            '<strong class="mde">{} pp</strong> ({} relative).<br>Control share needed '
            "for a target difference: {}</div>",
            f"{audience:,}",
            source,
            f"{baseline:.1%}",
            baseline_source,
            f"{percent:g}",
            f"{mde.minimum_detectable_effect * 100:.2f}",
            f"{mde.minimum_detectable_relative_lift:.0%}",
            format_html_join(" · ", "{}: {}", targets),
        )

    def uplift_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The latest snapshot (computed now if none); POST recomputes today's snapshot."""
        campaign = self._campaign_or_403(request, object_id)
        if request.method == "POST":
            if not self.has_change_permission(request, campaign):
                raise PermissionDenied
            fresh = snapshots.uplift_report_compute(campaign=campaign)
            self.message_user(request, f"Uplift report recomputed ({fresh.status}).")
            return HttpResponseRedirect(
                reverse("admin:campaigns_campaign_uplift", args=[campaign.pk])
            )
        report = snapshots.uplift_report_latest(
            campaign=campaign
        ) or snapshots.uplift_report_compute(campaign=campaign)
        figures = CampaignUpliftReport.from_json(report.figures)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": campaign,
            "title": f"Uplift: {campaign.name}",
            "report": report,
            "figures": figures,
            "charts": _uplift_charts(figures),
            "targeting_rows": [(_targeting_label(g.group), g) for g in figures.by_targeting],
            "groups": [
                ("Per rule", figures.by_rule),
                ("Per risk tier", figures.by_tier),
                ("Per channel", figures.by_channel),
                ("Per cycle", figures.by_cycle),
            ],
            "csv_url": reverse("admin:campaigns_campaign_uplift_csv", args=[campaign.pk]),
            "can_recompute": self.has_change_permission(request, campaign),
            "history": UpliftReport.objects.filter(scope_key=report.scope_key).order_by(
                "-report_date"
            )[:10],
        }
        return TemplateResponse(request, "admin/campaigns/campaign/uplift.html", context)

    def uplift_csv_view(self, request: HttpRequest, object_id: str) -> StreamingHttpResponse:
        campaign = self._campaign_or_403(request, object_id)
        response = StreamingHttpResponse(
            interventions_outcomes_csv(campaign=campaign),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = (
            f'attachment; filename="campaign-{campaign.pk}-assignments.csv"'
        )
        return response

    def program_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            snapshots.program_report_compute()
            return HttpResponseRedirect(reverse("admin:campaigns_program_uplift"))
        report = snapshots.program_report_latest() or snapshots.program_report_compute()
        figures = ProgramUpliftReport.from_json(report.figures)
        overall = figures.overall
        charts = []
        if overall is not None and overall.retention is not None:
            r = overall.retention
            lift = Interval("everyone else − global control", r.difference, r.ci_low, r.ci_high)
            charts.append(
                mark_safe(  # common.svg escapes every text it draws
                    interval_chart(
                        [lift], title="Retention difference, 95% CI", chart_id="program-lift"
                    )
                )
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Program uplift: global control vs everyone else",
            "report": report,
            "figures": figures,
            "overall": overall,
            "charts": charts,
        }
        return TemplateResponse(request, "admin/campaigns/campaign/program_uplift.html", context)

    def _campaign_or_403(self, request: HttpRequest, object_id: str) -> Campaign:
        campaign = get_object_or_404(Campaign, pk=object_id)
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        return campaign

    @admin.action(description="Compute the selected campaigns' uplift reports now")
    def compute_uplift(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        for campaign in queryset:
            report = snapshots.uplift_report_compute(campaign=campaign)
            self.message_user(request, f"{campaign}: uplift report {report.status}.")


def _arm_bar(arm: ArmFigures, std: float, label: str, series: str) -> Bar | None:
    """Revenue per customer of one arm with its normal 95% interval."""
    mean = arm.revenue_per_customer
    if mean is None or arm.n < 2:
        return None
    half = 1.959964 * std / arm.n**0.5
    return Bar(label, mean, mean - half, mean + half, series=series)


def _revenue_bars(group: GroupUplift, prefix: str) -> list[Bar]:
    if group.revenue is None:
        return []
    bars = [
        _arm_bar(group.treatment, group.revenue.treated_std, f"{prefix}treatment", "treatment"),
        _arm_bar(group.control, group.revenue.control_std, f"{prefix}control", "control"),
    ]
    return [bar for bar in bars if bar is not None]


def _lift_rows(groups: Sequence[GroupUplift], prefix: str) -> list[Interval]:
    return [
        Interval(
            f"{prefix}{g.group}",
            g.retention.difference,
            g.retention.ci_low,
            g.retention.ci_high,
            g.note or "",
        )
        for g in groups
        if g.retention is not None
    ]


def _targeting_label(value: object) -> str:
    """ "uplift_policy" → "Uplift policy"."""
    return TARGETING_LABELS.get(str(value), str(value)).capitalize()


def _targeting_chart(figures: CampaignUpliftReport) -> SafeString:
    """Each targeting mode's retention uplift and, when both ran, policy − rules, 95% CI."""
    rows = [
        Interval(_targeting_label(g.group), r.difference, r.ci_low, r.ci_high)
        for g in figures.by_targeting
        if (r := g.retention) is not None
    ]
    if figures.targeting is not None:
        d = figures.targeting.uplift_difference
        rows.append(Interval("Uplift policy − rules", d.estimate, d.ci_low, d.ci_high))
    return mark_safe(  # common.svg escapes every text it draws
        interval_chart(
            rows,
            title="Retention uplift by targeting (percentage points), 95% CI",
            chart_id="targeting",
        )
    )


def _uplift_charts(figures: CampaignUpliftReport) -> dict[str, SafeString]:
    """The report's charts as inline SVG (common.svg, which escapes every text)."""
    overall = [figures.overall] if figures.overall is not None else []
    rows = _lift_rows(overall, "") + _lift_rows(figures.by_rule, "rule ")
    rows += _lift_rows(figures.by_tier, "tier ")
    bars = [bar for group in overall for bar in _revenue_bars(group, "")]
    for group in figures.by_rule:
        bars += _revenue_bars(group, f"{str(group.group)[:2]} ")
    curve = figures.curve
    return {
        "targeting": _targeting_chart(figures) if len(figures.by_targeting) > 1 else mark_safe(""),
        "lift": mark_safe(
            interval_chart(rows, title="Retention difference (treatment − control), 95% CI")
        ),
        "curve": mark_safe(
            line_chart(
                [
                    (arm, list(zip(curve.days, shares, strict=False)))
                    for arm, shares in (("treatment", curve.treatment), ("control", curve.control))
                ],
                title="Cumulative share retained over the attribution window",
                x_label="day of the attribution window",
                y_label="share retained",
                y_percent=True,
                chart_id="curve",
                width=640,
                height=260,
            )
        ),
        "revenue": mark_safe(
            bar_chart(
                bars,
                title=f"Revenue per customer in the window ({currency()}), 95% CI",
                value_format=",.2f",
                chart_id="revenue",
                width=640,
            )
        ),
    }
