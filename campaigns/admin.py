"""Admin for CRM staff: campaigns with rules inline, a preview that writes nothing, a summary
page, the uplift report and the program report with the holdout planner (their pages:
campaigns/admin_uplift.py), the intervention log with filters, offers, coupons; the rule
builder is campaigns/admin_rules.py, the message template admin (with its live preview)
campaigns/admin_templates.py, the callback pages campaigns/admin_callbacks.py."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from campaigns import admin_callbacks, admin_templates, admin_uplift_models, selectors
from campaigns.admin_links import PermittedLinksAdmin, admin_link
from campaigns.admin_rules import (
    RuleForm,
    active_model_segments,
    attribute_datalists,
    audience_view,
)
from campaigns.admin_uplift import UpliftReportPages
from campaigns.admin_uplift_models import policy_preview
from campaigns.models import (
    Campaign,
    CampaignCycle,
    Coupon,
    FailureReason,
    Intervention,
    Offer,
    Response,
    Rule,
    SuppressionReason,
    UpliftModel,
    UpliftReport,
)
from campaigns.money import currency, money
from campaigns.services.dispatch import DispatchSummary, campaign_dispatch, campaign_preview
from campaigns.services.relay import RelaySummary, interventions_relay
from campaigns.tasks import campaign_dispatch_task, tasks_run_in_process
from campaigns.uplift.costs import EXPECTED_COST_BASIS, expected_message_cost

__all__ = [
    "admin_callbacks",
    "admin_templates",
    "admin_uplift_models",
]  # imported to register their admin pages


class RuleInline(admin.StackedInline):
    model = Rule
    form = RuleForm
    extra = 1
    ordering = ["position", "pk"]
    fields = [
        ("position", "name"),
        "segment",
        "tiers",
        ("min_probability", "max_probability"),
        ("min_value", "max_value"),
        "attribute_conditions",
        "consent_channel",
        ("channel", "offer", "template"),
        ("fallback_channel", "fallback_template"),
        "audience_now",
    ]
    readonly_fields = ["audience_now"]

    @admin.display(description="Customers now")
    def audience_now(self, rule: Rule | None) -> SafeString:
        """Filled while editing by rule_builder.js from the audience view (all rules at once)."""
        return format_html('<div class="rule-audience" aria-live="polite">{}</div>', "Counting…")


@admin.register(Campaign)
class CampaignAdmin(UpliftReportPages):
    def get_formset_kwargs(
        self, request: HttpRequest, obj: Any, inline: Any, prefix: str
    ) -> dict[str, Any]:
        """A new campaign opened from a model's student rule ("use as a campaign segment":
        ?segment=version#leaf) starts with a rule on that segment."""
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        segment = request.GET.get("segment", "")
        if request.method == "GET" and not obj.pk and isinstance(inline, RuleInline) and segment:
            words = next((s.text for s in active_model_segments()[1] if s.key == segment), "")
            name = f"Segment: {words}"[:200] if words else "Model segment"
            kwargs["initial"] = [{"segment": segment, "name": name, "position": 1}]
        return kwargs

    list_display = [
        "name",
        "status",
        "priority",
        "runs",
        "control_percentage",
        "starts_at",
        "ends_at",
        "links",
    ]
    list_filter = ["status", "mode"]
    search_fields = ["name"]
    inlines = [RuleInline]
    actions = ["preview_campaign", "dispatch_now", "compute_uplift"]
    readonly_fields = ["holdout_planner"]
    fieldsets = [
        (None, {"fields": [("name", "key"), "description", "status", ("starts_at", "ends_at")]}),
        (
            "When it runs",
            {
                "fields": ["mode", "cadence_minutes", "reentry_days"],
                "description": "Which events rescore a customer: Customers › Event kinds.",
            },
        ),
        (
            "Experiment",
            {
                "fields": [
                    "control_percentage",
                    "salt",
                    "attribution_window_days",
                    "holdout_planner",
                ]
            },
        ),
        (
            "Targeting",
            {
                "fields": ["targeting", ("policy_budget", "exploration_percentage")],
                "description": "Uplift policy needs a champion uplift model (Campaigns › "
                "Uplift models; manage.py uplift_train). Until one exists the cycles use "
                "the rules, and the preview and the cycle summary say so.",
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

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        budget = form.base_fields.get("policy_budget")
        if budget is not None:  # amounts carry their currency (campaigns.money)
            budget.label = f"Policy budget per cycle ({currency()})"
        share = form.base_fields.get("exploration_percentage")
        if share is not None:
            share.label = "Exploration (% of contacts)"
        return form

    def get_readonly_fields(self, request: HttpRequest, obj: Campaign | None = None) -> Any:
        # The salt decides the arms; once a cycle has run, changing it would re-randomise.
        if obj is not None and obj.cycles.exists():
            return ["salt", "holdout_planner"]
        return ["holdout_planner"]

    @admin.display(description="runs", ordering="mode")
    def runs(self, campaign: Campaign) -> str:
        return campaign.mode_text()

    @admin.display(description="")
    def links(self, campaign: Campaign) -> SafeString:
        return format_html(
            '<a href="{}">preview</a> · <a href="{}">summary</a> · <a href="{}">uplift</a>',
            reverse("admin:campaigns_campaign_preview", args=[campaign.pk]),
            reverse("admin:campaigns_campaign_summary", args=[campaign.pk]),
            reverse("admin:campaigns_campaign_uplift", args=[campaign.pk]),
        )

    class Media:
        js = ["campaigns/rule_builder.js"]
        css = {"all": ["campaigns/rule_builder.css"]}

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> HttpResponse:
        context["attribute_datalists"] = attribute_datalists()
        return super().render_change_form(request, context, *args, **kwargs)

    def save_model(self, request: HttpRequest, obj: Campaign, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if obj.control_percentage == 0:
            messages.warning(
                request,
                f"“{obj.name}” has no control group (0%): its uplift cannot be measured. "
                "Keep at least a few percent held out unless you have a reason not to.",
            )

    def get_urls(self) -> list[Any]:
        own = [
            path(
                "audience/",
                self.admin_site.admin_view(audience_view),
                name="campaigns_campaign_audience",
            ),
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
            "policy": policy_preview(preview.policy, model_url=_uplift_model_url(preview.policy)),
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
        """Without a broker (the embedded default) the relay runs here, right after the
        dispatch, and the message says what was delivered; with one, a worker does both."""
        now = timezone.now()
        for campaign in queryset.order_by("priority", "pk"):
            if campaign.is_triggered:
                self.message_user(
                    request,
                    f"{campaign}: a triggered campaign has no cycle to dispatch; it contacts "
                    "each customer right after an event rescores them (docs/realtime.md).",
                    messages.WARNING,
                )
                continue
            if not tasks_run_in_process():
                campaign_dispatch_task.delay(campaign.pk, now.isoformat())
                summary_url = reverse("admin:campaigns_campaign_summary", args=[campaign.pk])
                self.message_user(
                    request,
                    format_html(
                        "{}: queued; a worker dispatches the cycle, then delivers it. "
                        '<a href="{}">Follow the cycle on its summary page</a> '
                        "(pending turns to sent as the relay works).",
                        campaign,
                        summary_url,
                    ),
                )
                self.log_change(request, campaign, "Dispatch queued for a worker.")
                continue
            summary = campaign_dispatch(campaign=campaign, now=now)
            if summary.already_ran:
                outcome = f"cycle {summary.cycle_key} had already run; nothing new to deliver."
                self.message_user(request, f"{campaign}: {outcome}", messages.WARNING)
            else:
                relay = interventions_relay(max_per_channel=dict(settings.CAMPAIGN_RATE_PER_MINUTE))
                outcome = dispatch_now_text(summary=summary, relay=relay)
                self.message_user(request, f"{campaign}: {outcome}")
            # The admin History of the campaign records who dispatched it and what it did.
            self.log_change(request, campaign, f"Dispatched now, {outcome}")


def _uplift_model_url(policy: dict[str, Any]) -> str:
    version = policy.get("model")
    model = UpliftModel.objects.filter(version=version).only("pk").first() if version else None
    return reverse("admin:campaigns_upliftmodel_change", args=[model.pk]) if model else ""


def _counted(counts: dict[str, int], labels: dict[str, str]) -> str:
    return ", ".join(f"{labels.get(k, k).lower()}: {n}" for k, n in sorted(counts.items()) if n)


def dispatch_now_text(*, summary: DispatchSummary, relay: RelaySummary) -> str:
    """What "dispatch now" did in words: the cycle's arms, what the relay delivered per channel,
    what was suppressed and why, what waits (quiet hours, rate) and what failed."""
    reasons = dict(SuppressionReason.choices) | dict(FailureReason.choices)
    parts = [
        f"cycle {summary.cycle_key}: {summary.eligible} eligible, {summary.treatment} treatment,"
        f" {summary.control} control (held out)."
    ]
    delivered = [
        f"{relay.sent.get(channel, 0)} {words}"
        for channel, words in DELIVERED_WORDS.items()
        if relay.sent.get(channel, 0) or summary.per_channel.get(channel, 0)
    ]
    parts.append(("Delivered now: " + ", ".join(delivered) + ".") if delivered else "")
    suppressed = sum(summary.suppressed.values()) + sum(relay.suppressed_at_send.values())
    if suppressed:
        both = dict(summary.suppressed)
        for reason, n in relay.suppressed_at_send.items():
            both[reason] = both.get(reason, 0) + n
        parts.append(f"{suppressed} suppressed ({_counted(both, reasons)}).")
    if summary.scheduled:
        parts.append(f"{summary.scheduled} wait for the end of the customers' quiet hours.")
    if relay.rate_limited:
        parts.append(f"Rate limit reached for {', '.join(relay.rate_limited)}: the rest follows.")
    if relay.failed:
        parts.append(f"{sum(relay.failed.values())} failed ({_counted(relay.failed, reasons)}).")
    return " ".join(p for p in parts if p)


# How "dispatch now" words each channel's deliveries.
DELIVERED_WORDS = {
    "email": "sent by email",
    "sms": "sent by SMS",
    "callback": "callback tasks created",
    "coupon": "coupons issued",
    "push": "sent as push notifications",
    "in_app": "put in the app's inbox",
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
class InterventionAdmin(PermittedLinksAdmin):
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
    list_filter = ["campaign", "arm", "status", "reason", "channel", "fell_back", "risk_tier"]
    search_fields = ["customer__external_id", "customer__email"]
    list_select_related = ["campaign", "customer", "rule__campaign"]
    show_full_result_count = False
    date_hierarchy = "created_at"
    # Read-only page: related objects are links only for users who may open them.
    fields = [
        ("campaign_link", "cycle_key", "rule_name"),
        ("customer_link", "arm", "channel", "fell_back"),
        ("offer_link", "template_link", "offer_cost"),
        ("churn_probability", "risk_tier", "model_version", "customer_value"),
        ("status", "reason", "detail"),
        ("send_after", "attempts", "provider_message_id"),
        ("created_at", "claimed_at", "sent_at", "delivered_at"),
    ]
    readonly_fields = ["campaign_link", "cycle_key", "rule_name", "customer_link"]
    readonly_fields += ["offer_link", "template_link"]

    @admin.display(description="Campaign")
    def campaign_link(self, intervention: Intervention) -> Any:
        return admin_link(intervention.campaign)

    @admin.display(description="Cycle")
    def cycle_key(self, intervention: Intervention) -> str:
        return intervention.cycle.cycle_key

    @admin.display(description="Rule")
    def rule_name(self, intervention: Intervention) -> str:
        return intervention.rule.name

    @admin.display(description="Customer")
    def customer_link(self, intervention: Intervention) -> Any:
        return admin_link(intervention.customer)

    @admin.display(description="Offer")
    def offer_link(self, intervention: Intervention) -> Any:
        return admin_link(intervention.offer)

    @admin.display(description="Template")
    def template_link(self, intervention: Intervention) -> Any:
        return admin_link(intervention.template)

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
