"""Admin for CRM staff: campaigns with rules inline, a preview that writes nothing, a summary
page, the uplift report and the program report with the holdout planner (their pages:
campaigns/admin_uplift.py), the intervention log with filters, offers, templates (their
admin, with the live preview, is campaigns/admin_templates.py), coupons, and agents'
"My callbacks"."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from campaigns import (
    admin_templates,  # noqa: F401  (registers the message template admin)
    selectors,
)
from campaigns.admin_uplift import UpliftReportPages
from campaigns.models import (
    CallbackTask,
    Campaign,
    CampaignCycle,
    Coupon,
    Intervention,
    MyCallback,
    Offer,
    Response,
    Rule,
    UpliftReport,
)
from campaigns.money import money
from campaigns.services.dispatch import campaign_dispatch, campaign_preview
from campaigns.services.relay import reason_text
from campaigns.services.responses import callback_task_record_outcome
from campaigns.uplift.costs import EXPECTED_COST_BASIS, expected_message_cost
from scoring.selectors import customer_latest_reasons


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
class CampaignAdmin(UpliftReportPages):
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

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        campaign = self._campaign_or_403(request, object_id)
        now = timezone.now()
        preview = campaign_preview(campaign=campaign, now=now)
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
                        "message_cost": expected_message_cost(
                            {rule["channel"]: rule[arm]["taken"] if arm == "treatment" else 0},
                            settings.CAMPAIGN_MESSAGE_COST,
                        ),
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
            "message_cost": expected_message_cost(
                preview.per_channel, settings.CAMPAIGN_MESSAGE_COST
            ),
            "cost_basis": EXPECTED_COST_BASIS,
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
            summary = campaign_dispatch(campaign=campaign, now=now)
            if summary.already_ran:
                outcome = f"cycle {summary.cycle_key} had already run."
                self.message_user(request, f"{campaign}: {outcome}", messages.WARNING)
            else:
                outcome = (
                    f"cycle {summary.cycle_key}: {summary.eligible} eligible, "
                    f"{summary.treatment} treatment, {summary.control} control, "
                    f"{sum(summary.suppressed.values())} suppressed."
                )
                self.message_user(request, f"{campaign}: {outcome}")
            # The admin History of the campaign records who dispatched it and what it did.
            self.log_change(request, campaign, f"Dispatched now, {outcome}")


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
    list_display = ["name", "kind", "offered", "validity_days", "unit_cost_money"]
    list_filter = ["kind"]
    search_fields = ["name"]

    @admin.display(description="Offer", ordering="value")
    def offered(self, offer: Offer) -> str:
        return offer.describe() or "—"

    @admin.display(description="Unit cost", ordering="unit_cost")
    def unit_cost_money(self, offer: Offer) -> str:
        return money(offer.unit_cost)


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
        format_html_join("", "<li>{}</li>", ((reason_text(r),) for r in reasons)),
    )


@admin.register(MyCallback)
class MyCallbackAdmin(admin.ModelAdmin):
    """An agent's own callbacks, due first and riskiest first; recording an outcome closes the
    task and logs a response (campaigns.services.responses.callback_task_record_outcome)."""

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
            callback_task_record_outcome(
                task=obj, outcome=obj.outcome, notes=obj.notes, agent=request.user
            )
        else:
            obj.save(update_fields=["notes"])
