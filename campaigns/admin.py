"""Admin for CRM staff: campaigns with rules inline, a preview that writes nothing, a summary
page, the uplift report (charts, CSV export, recompute), the holdout planner, the program report
(global control), the intervention log with filters, offers, templates (with a rendered
preview), coupons, and agents' "My callbacks"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from campaigns import selectors, services
from campaigns.measurement import snapshots
from campaigns.measurement.export import interventions_outcomes_csv
from campaigns.models import (
    CallbackTask,
    Campaign,
    CampaignCycle,
    Coupon,
    Intervention,
    MessageTemplate,
    MyCallback,
    Offer,
    Response,
    Rule,
    UpliftReport,
)
from campaigns.rendering import SAMPLE_CONTEXT, TemplateRenderError, message_render
from campaigns.uplift.breakdown import ArmFigures, GroupUplift
from campaigns.uplift.power import control_percent_for_effect, minimum_detectable_effect
from campaigns.uplift.report import CampaignUpliftReport, ProgramUpliftReport
from common.svg import Bar, Interval, bar_chart, interval_chart, line_chart
from scoring.selectors import customer_latest_reasons

# Planner defaults when a campaign has no measured control rate yet: a 20% baseline retention
# in the window and target differences of 2 and 5 percentage points.
PLANNING_BASELINE_RATE = 0.20
PLANNING_TARGET_EFFECTS = (0.02, 0.05)


class RuleInline(admin.StackedInline):
    model = Rule
    extra = 1
    ordering = ["position", "pk"]
    fields = [
        ("position", "name"),
        ("tiers", "min_probability", "max_probability"),
        ("min_value", "max_value"),
        "attribute_conditions",
        "consent_channel",
        ("channel", "offer", "template"),
    ]


@admin.register(Campaign)
class CampaignAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "status",
        "priority",
        "cadence_minutes",
        "control_percentage",
        "starts_at",
        "ends_at",
        "links",
    ]
    list_filter = ["status"]
    search_fields = ["name"]
    inlines = [RuleInline]
    actions = ["preview_campaign", "dispatch_now", "compute_uplift"]
    readonly_fields = ["holdout_planner"]
    fieldsets = [
        (None, {"fields": ["name", "description", "status", ("starts_at", "ends_at")]}),
        (
            "Experiment",
            {
                "fields": [
                    "cadence_minutes",
                    "control_percentage",
                    "salt",
                    "attribution_window_days",
                    "holdout_planner",
                ]
            },
        ),
        ("Contact policy", {"fields": ["cooldown_days", "priority"]}),
        (
            "Budget",
            {
                "fields": [
                    ("max_interventions_per_cycle", "max_offer_value_per_cycle"),
                    ("max_interventions_total", "max_offer_value_total"),
                ]
            },
        ),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        # The salt decides the arms; once a cycle has run, changing it would re-randomise.
        if obj is not None and obj.cycles.exists():
            return ["salt", "holdout_planner"]
        return ["holdout_planner"]

    @admin.display(description="Holdout planner")
    def holdout_planner(self, campaign: Campaign) -> SafeString:
        """MDE at 80% power for this control percentage, and the holdout a target needs."""
        if campaign.pk is None:
            return format_html("<em>{}</em>", "Save the campaign (with rules) to plan its holdout.")
        audience, source = selectors.campaign_audience_estimate(campaign=campaign)
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

    @admin.display(description="")
    def links(self, campaign: Campaign) -> SafeString:
        return format_html(
            '<a href="{}">preview</a> · <a href="{}">summary</a> · <a href="{}">uplift</a>',
            reverse("admin:campaigns_campaign_preview", args=[campaign.pk]),
            reverse("admin:campaigns_campaign_summary", args=[campaign.pk]),
            reverse("admin:campaigns_campaign_uplift", args=[campaign.pk]),
        )

    def get_urls(self) -> list[Any]:
        own = [
            path(
                "<path:object_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="campaigns_campaign_preview",
            ),
            path(
                "<path:object_id>/summary/",
                self.admin_site.admin_view(self.summary_view),
                name="campaigns_campaign_summary",
            ),
            path(
                "<path:object_id>/uplift/",
                self.admin_site.admin_view(self.uplift_view),
                name="campaigns_campaign_uplift",
            ),
            path(
                "<path:object_id>/uplift/assignments.csv",
                self.admin_site.admin_view(self.uplift_csv_view),
                name="campaigns_campaign_uplift_csv",
            ),
            path(
                "program-uplift/",
                self.admin_site.admin_view(self.program_view),
                name="campaigns_program_uplift",
            ),
        ]
        return own + super().get_urls()

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

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._campaign_or_403(request, object_id)
        now = timezone.now()
        preview = services.campaign_preview(campaign=campaign, now=now)
        reasons = sorted(
            {
                r
                for rule in preview.per_rule
                for arm in ("treatment", "control")
                for r in rule[arm]["suppressed"]
            }
        )
        rows = [
            {
                "rule": rule["rule"],
                "channel": rule["channel"],
                "offer": rule["offer"],
                "arms": [
                    {
                        "arm": arm,
                        "matched": rule[arm]["matched"],
                        "taken": rule[arm]["taken"],
                        "suppressed": [rule[arm]["suppressed"].get(r, 0) for r in reasons],
                        "offer_cost": rule[arm]["offer_cost"],
                    }
                    for arm in ("treatment", "control")
                ],
            }
            for rule in preview.per_rule
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": campaign,
            "title": f"Preview: {campaign.name}",
            "preview": preview,
            "reasons": reasons,
            "rows": rows,
            "now": now,
        }
        return TemplateResponse(request, "admin/campaigns/campaign/preview.html", context)

    def summary_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._campaign_or_403(request, object_id)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": campaign,
            "title": f"Summary: {campaign.name}",
            "summary": selectors.campaign_summary(campaign=campaign),
            "interventions_url": reverse("admin:campaigns_intervention_changelist")
            + f"?campaign__id__exact={campaign.pk}",
        }
        return TemplateResponse(request, "admin/campaigns/campaign/summary.html", context)

    @admin.action(description="Preview the selected campaign (writes nothing)")
    def preview_campaign(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> Any:
        campaign = queryset.first()
        if campaign is None:
            return None
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_preview", args=[campaign.pk]))

    @admin.action(description="Dispatch the selected campaigns' current cycle now")
    def dispatch_now(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        now = timezone.now()
        for campaign in queryset.order_by("priority", "pk"):
            summary = services.campaign_dispatch(campaign=campaign, now=now)
            if summary.already_ran:
                self.message_user(
                    request,
                    f"{campaign}: cycle {summary.cycle_key} had already run.",
                    messages.WARNING,
                )
            else:
                self.message_user(
                    request,
                    f"{campaign}: {summary.eligible} eligible, {summary.treatment} treatment, "
                    f"{summary.control} control, {sum(summary.suppressed.values())} suppressed.",
                )

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


def _uplift_charts(figures: CampaignUpliftReport) -> dict[str, SafeString]:
    """The report's three charts as inline SVG (common.svg, which escapes every text)."""
    overall = [figures.overall] if figures.overall is not None else []
    rows = _lift_rows(overall, "") + _lift_rows(figures.by_rule, "rule ")
    rows += _lift_rows(figures.by_tier, "tier ")
    bars = [bar for group in overall for bar in _revenue_bars(group, "")]
    for group in figures.by_rule:
        bars += _revenue_bars(group, f"{str(group.group)[:2]} ")
    curve = figures.curve
    return {
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
                title="Revenue per customer in the window, 95% CI",
                value_format=",.2f",
                chart_id="revenue",
                width=640,
            )
        ),
    }


@admin.register(UpliftReport)
class UpliftReportAdmin(admin.ModelAdmin):
    list_display = ["report_date", "kind", "campaign", "cycle", "status", "measured_at", "view"]
    list_filter = ["kind", "status", "campaign"]
    readonly_fields = [f.name for f in UpliftReport._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="")
    def view(self, report: UpliftReport) -> SafeString:
        if report.campaign_id:
            url = reverse("admin:campaigns_campaign_uplift", args=[report.campaign_id])
        else:
            url = reverse("admin:campaigns_program_uplift")
        return format_html('<a href="{}">report</a>', url)


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "value", "validity_days", "unit_cost"]
    list_filter = ["kind"]
    search_fields = ["name"]


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "channel", "subject"]
    list_filter = ["channel"]
    search_fields = ["name", "subject", "body"]
    readonly_fields = ["preview"]
    fields = ["name", "channel", "subject", "body", "html_body", "preview"]

    @admin.display(description="Preview (sample customer)")
    def preview(self, template: MessageTemplate) -> SafeString:
        if not template.pk:
            return format_html("<em>{}</em>", "Save to see a preview.")
        try:
            rendered = message_render(
                subject=template.subject,
                body=template.body,
                html_body=template.html_body,
                context=SAMPLE_CONTEXT,
            )
        except TemplateRenderError as exc:
            return format_html('<span class="errornote">{}</span>', exc)
        return format_html(
            "<p><strong>Subject:</strong> {}</p><pre>{}</pre>"
            '<iframe sandbox srcdoc="{}" style="width:100%;height:240px;border:1px solid #ccc">'
            "</iframe>",
            rendered.subject,
            rendered.text,
            rendered.html,
        )


@admin.register(Intervention)
class InterventionAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "campaign",
        "customer",
        "rule",
        "arm",
        "channel",
        "status",
        "reason",
        "churn_probability",
        "risk_tier",
        "sent_at",
    ]
    list_filter = ["campaign", "arm", "status", "reason", "channel", "risk_tier"]
    search_fields = ["customer__external_id", "customer__email"]
    list_select_related = ["campaign", "customer", "rule__campaign"]
    raw_id_fields = ["customer"]
    show_full_result_count = False
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the log is written by the dispatch and the relay only

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CampaignCycle)
class CampaignCycleAdmin(admin.ModelAdmin):
    list_display = ["campaign", "cycle_key", "started_at", "finished_at"]
    list_filter = ["campaign"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Coupon)
class CouponAdmin(admin.ModelAdmin):
    list_display = ["code", "customer", "kind", "value", "expires_at", "redeemed_at"]
    list_filter = ["kind", ("redeemed_at", admin.EmptyFieldListFilter)]
    search_fields = ["code", "customer__external_id", "customer__email"]
    raw_id_fields = ["customer", "intervention", "redeemed_order"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["occurred_at", "kind", "intervention", "revenue", "order_external_id"]
    list_filter = ["kind"]
    raw_id_fields = ["intervention"]
    show_full_result_count = False


@admin.register(CallbackTask)
class CallbackTaskAdmin(admin.ModelAdmin):
    """All callbacks, for team leads: reassign, follow up."""

    list_display = ["customer", "assigned_agent", "due_at", "status", "outcome"]
    list_filter = ["status", "outcome", "assigned_agent"]
    raw_id_fields = ["customer", "intervention"]
    search_fields = ["customer__external_id", "customer__name"]


def _reasons_html(reasons: list[Any]) -> SafeString:
    if not reasons:
        return format_html("<em>{}</em>", "—")
    return format_html(
        "<ul style='margin:0;padding-left:1em'>{}</ul>",
        format_html_join("", "<li>{}</li>", ((services._reason_text(r),) for r in reasons)),
    )


@admin.register(MyCallback)
class MyCallbackAdmin(admin.ModelAdmin):
    """An agent's own callbacks, due first and riskiest first; recording an outcome closes the
    task and logs a response (campaigns.services.callback_task_record_outcome)."""

    list_display = [
        "customer_name",
        "phone",
        "due_at",
        "risk",
        "offer",
        "reasons",
        "status",
        "outcome",
    ]
    list_display_links = ["customer_name"]
    list_filter = ["status"]
    fields = [
        "customer_name",
        "phone",
        "due_at",
        "risk",
        "offer",
        "reasons",
        "status",
        "outcome",
        "notes",
    ]
    readonly_fields = ["customer_name", "phone", "due_at", "risk", "offer", "reasons", "status"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super()
            .get_queryset(request)
            .filter(assigned_agent=request.user)
            .select_related("customer", "intervention__offer")
            .order_by("due_at", "-intervention__churn_probability")
        )

    def get_changelist_instance(self, request: HttpRequest) -> Any:
        changelist = super().get_changelist_instance(request)
        found = customer_latest_reasons(
            customer_ids=[t.customer_id for t in changelist.result_list]
        )
        for task in changelist.result_list:
            task.latest_reasons = found.get(task.customer_id, [])
        return changelist

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="Customer")
    def customer_name(self, task: CallbackTask) -> str:
        return str(task.customer)

    @admin.display(description="Phone")
    def phone(self, task: CallbackTask) -> str:
        return task.customer.phone

    @admin.display(description="Risk", ordering="intervention__churn_probability")
    def risk(self, task: CallbackTask) -> str:
        return f"{task.intervention.churn_probability:.0%} ({task.intervention.risk_tier})"

    @admin.display(description="Offer to make")
    def offer(self, task: CallbackTask) -> str:
        offer = task.intervention.offer
        return f"{offer.name} — {offer.describe()}" if offer else "—"

    @admin.display(description="Why at risk")
    def reasons(self, task: CallbackTask) -> SafeString:
        reasons = getattr(task, "latest_reasons", None)
        if reasons is None:
            reasons = customer_latest_reasons(customer_ids=[task.customer_id]).get(
                task.customer_id, []
            )
        return _reasons_html(reasons)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if obj.outcome:
            services.callback_task_record_outcome(
                task=obj, outcome=obj.outcome, notes=obj.notes, agent=request.user
            )
        else:
            obj.save(update_fields=["notes"])
