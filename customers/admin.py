"""Admin for CRM staff: find a customer by id or email and see their orders, events, consent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from common.svg import Step, waterfall_chart
from customers.admin_panels import customer_panel, customer_panels
from customers.models import (
    PERSONAL_DATA_SCOPES,
    ApiClient,
    ApiScope,
    Consent,
    Customer,
    Device,
    DeviceStatus,
    Event,
    EventKind,
    Order,
)
from customers.services import api_client_create, api_client_rotate_key


class ConsentInline(admin.TabularInline):
    model = Consent
    fields = ["channel", "status", "recorded_at", "source"]
    extra = 0


class DeviceInline(admin.TabularInline):
    """The customer's push devices (registered by the shop's apps through the API)."""

    model = Device
    fields = ["platform", "status_words", "last_seen_at", "created_at", "short_token"]
    readonly_fields = ["platform", "status_words", "last_seen_at", "created_at", "short_token"]
    extra = 0
    can_delete = True
    verbose_name = "push device"
    verbose_name_plural = "Push devices (newest first; an unregistered device gets nothing)"

    def has_add_permission(self, request: Any, obj: Any = None) -> bool:
        return False  # devices come from the apps, through the API

    @admin.display(description="Status")
    def status_words(self, device: Device) -> str:
        if device.status == DeviceStatus.ACTIVE:
            return "Active"
        when = f" on {device.unregistered_at:%Y-%m-%d %H:%M} UTC" if device.unregistered_at else ""
        return f"Unregistered{when}: {device.unregistered_reason or 'no reason given'}"

    @admin.display(description="Token or endpoint")
    def short_token(self, device: Device) -> str:
        token = device.token
        return token if len(token) <= 48 else f"{token[:32]}…{token[-12:]}"


# The default tiers by severity (scoring owns the tier table; a customer row carries its name).
TIER_ORDER = ["critical", "high", "medium", "low"]


def tier_words(tier: str) -> str:
    if tier == "not_scorable":
        return "Not scorable (no order before the scoring date)"
    return tier.replace("_", " ").capitalize() or "—"


class RiskTierFilter(admin.SimpleListFilter):
    """The tiers customers carry, most severe first, in words ("Not scorable" last)."""

    title = "risk tier"
    parameter_name = "risk_tier"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        present = set(
            Customer.objects.exclude(risk_tier="").values_list("risk_tier", flat=True).distinct()
        )

        def rank(tier: str) -> tuple[int, str]:
            return (TIER_ORDER.index(tier) if tier in TIER_ORDER else len(TIER_ORDER), tier)

        return [(t, tier_words(t).split(" (")[0]) for t in sorted(present, key=rank)]

    def queryset(self, request: HttpRequest, queryset: Any) -> Any:
        return queryset.filter(risk_tier=self.value()) if self.value() else queryset


def _waterfall_read(
    data: dict[str, Any], reasons: list[str]
) -> tuple[float, list[Step], float, str]:
    """A stored waterfall (scoring.ml.explain `attributions_json`): the baseline, the steps
    (a step given as an int is the score's reason at that position), the rest and the method
    code. Reads the earlier long-keyed shape too (scores stored before it was made compact)."""
    if "b" in data:
        flat = data["i"]  # step, points, step, points, …
        items = [
            Step(reasons[label] if isinstance(label, int) else str(label), float(value))
            for label, value in zip(flat[0::2], flat[1::2], strict=True)
        ]
        return float(data["b"]), items, float(data.get("r") or 0.0), str(data.get("m", ""))
    items = [Step(str(label), float(value)) for label, value in data["items"]]
    return float(data["baseline"]), items, float(data.get("rest") or 0.0), str(data["method"])


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = [
        "external_id",
        "name",
        "email",
        "country",
        "tier_shown",
        "probability_shown",
        "signup_date",
        "erased",
    ]
    list_filter = [RiskTierFilter, "erased", "country"]
    search_fields = ["external_id", "email", "name"]
    readonly_fields = [
        "recent_orders",
        "recent_events",
        "probability_shown",
        "tier_shown",
        "score_reasons",
        "score_waterfall",
        "scored_at",
        "score_model_version",
        "created_at",
        "updated_at",
    ]
    fieldsets = [
        (None, {"fields": ["external_id", "name", "email", "phone", "time_zone", "country"]}),
        ("Profile", {"fields": ["signup_date", "attributes", "erased"]}),
        (
            "Latest churn score",
            {
                "fields": [
                    "probability_shown",
                    "tier_shown",
                    "score_reasons",
                    "score_waterfall",
                    "scored_at",
                    "score_model_version",
                ]
            },
        ),
        ("Activity", {"fields": ["recent_orders", "recent_events"]}),
        ("Record", {"fields": ["created_at", "updated_at"]}),
    ]
    inlines = [ConsentInline, DeviceInline]
    show_full_result_count = False

    # The panels other apps register (customers/admin_panels.py; scoring's recommendations)
    # come after the churn score, one fieldset each.
    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is None:
            return fieldsets
        panels = [(p.title, {"fields": [p.field]}) for p in customer_panels()]
        return [*fieldsets[:3], *panels, *fieldsets[3:]]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        return fields + [p.field for p in customer_panels()] if obj is not None else fields

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        """Deleting a customer would cascade to their interventions (with responses and
        coupons): the evidence of what campaigns did and the uplift they measured. A customer
        the campaigns decided about is protected here, on the delete page and in the bulk
        "Delete selected" alike, and staff are pointed to erasure, which blanks the personal
        data and keeps that evidence (customers.services.customer_erase).

        Without this the intervention admin's refusal to delete its rows surfaced as "your
        account doesn't have permission to delete: intervention", as if another account could;
        a protected customer makes the whole deletion impossible, so that line is left out."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        kept = customers_with_campaign_evidence(objs)
        if kept:
            return deleted, counts, set(), [*protected, *kept]
        return deleted, counts, perms_needed, protected

    def __getattr__(self, name: str) -> Any:
        panel = customer_panel(name)
        if panel is None:
            raise AttributeError(name)

        def shown(customer: Customer) -> Any:
            return panel.render(customer)

        shown.short_description = panel.title  # type: ignore[attr-defined]
        return shown

    @admin.display(description="Churn probability", ordering="churn_probability")
    def probability_shown(self, customer: Customer) -> str:
        p = customer.churn_probability
        return "—" if p is None else f"{p:.1%}"

    @admin.display(description="Risk tier", ordering="risk_tier")
    def tier_shown(self, customer: Customer) -> str:
        return tier_words(customer.risk_tier or "")

    @admin.display(description="Why (top reasons)")
    def score_reasons(self, customer: Customer) -> str:
        # The score history lives in the scoring app; its rows point here (customer.scores).
        latest = customer.scores.order_by("-scored_at", "-pk").first()  # type: ignore[attr-defined]
        return "; ".join(latest.reasons) if latest and latest.reasons else "—"

    @admin.display(description="How the score adds up")
    def score_waterfall(self, customer: Customer) -> SafeString | str:
        """The latest score's attributions (scoring.ml.shapley) as a waterfall from the typical
        customer's probability to this customer's, then the same in words."""
        latest = customer.scores.order_by("-scored_at", "-pk").first()  # type: ignore[attr-defined]
        data = latest.attributions if latest and latest.probability is not None else None
        if latest is None or not data or not (data.get("i") or data.get("items")):
            return "— (reasons are worked out for the customers in the higher risk tiers)"
        baseline, steps, rest, method = _waterfall_read(data, list(latest.reasons or []))
        if abs(rest) >= 0.0005:
            steps.append(Step("everything else", rest))
        chart = waterfall_chart(
            steps,
            start=Step("typical customer", baseline),
            end_label="this customer",
            title="From the typical customer's churn risk to this customer's",
            chart_id="score-waterfall",
        )
        words = format_html_join(
            mark_safe("<br>"),
            "{} the risk by {} points: {}",
            (
                ("raises" if s.value > 0 else "lowers", f"{abs(s.value) * 100:.1f}", s.label)
                for s in steps
            ),
        )
        method = (
            "each step estimated by sampling, the total exact"
            if method in ("s", "sampled")
            else "exact"
        )
        summary = format_html(
            "<p>A typical customer's churn risk is {}; this customer's is {}. The steps add up "
            "to the difference ({}).</p><p>{}</p>",
            f"{baseline:.1%}",
            f"{baseline + sum(s.value for s in steps):.1%}",
            method,
            words,
        )
        # The chart's texts are escaped by common.svg.
        return format_html("{}{}", mark_safe(chart), summary)

    @admin.display(description="Recent orders")
    def recent_orders(self, customer: Customer) -> SafeString:
        orders = customer.orders.order_by("-placed_at")[:RECENT_ROWS]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td></tr>",
            (
                (o.external_id, _when(o.placed_at), o.amount, o.currency, o.status, o.item_count)
                for o in orders
            ),
        )
        link = reverse("admin:customers_order_changelist") + f"?q={customer.external_id}"
        return _table(["order", "placed", "amount", "status", "items"], rows, link)

    @admin.display(description="Recent events")
    def recent_events(self, customer: Customer) -> SafeString:
        events = customer.events.order_by("-occurred_at")[:RECENT_ROWS]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((e.kind, _when(e.occurred_at), e.properties or "") for e in events),
        )
        link = reverse("admin:customers_event_changelist") + f"?q={customer.external_id}"
        return _table(["kind", "when", "properties"], rows, link)


RECENT_ROWS = 20


def customers_with_campaign_evidence(customers: Any) -> list[str]:
    """One sentence per customer among `customers` that has interventions, saying why it is
    kept and how to remove its personal data instead. The interventions are the campaigns
    app's (a floor above): read through the relation's name, not imported."""
    # The bulk action passes a queryset (a subquery, whatever its size), the delete page a list.
    ids: Any = customers.values("pk") if isinstance(customers, QuerySet) else None
    ids = [c.pk for c in customers] if ids is None else ids
    kept = (
        Customer.objects.filter(pk__in=ids)
        .annotate(interventions_count=Count("interventions"))
        .filter(interventions_count__gt=0)
        .order_by("external_id")
    )
    return [
        f"Customer {c.external_id}: kept, with {c.interventions_count} campaign "
        f"{'intervention' if c.interventions_count == 1 else 'interventions'} (who was "
        f"contacted or held out, and what they did after): the evidence the campaigns' results "
        f"are measured on. To remove this customer's personal data, erase it instead: "
        f"python manage.py erase_customer {c.external_id}, or the API's "
        f"POST /api/v1/customers/{c.external_id}/erase (docs/privacy.md)."
        for c in kept
    ]


def _when(stamp: datetime) -> str:
    return f"{stamp:%Y-%m-%d %H:%M} UTC"


def _table(headers: list[str], rows: SafeString, link: str) -> SafeString:
    if not rows:
        return format_html("<em>{}</em>", "none")
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    return format_html(
        '<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table><a href="{}">all…</a>',
        head,
        rows,
        link,
    )


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["external_id", "customer", "placed_at", "amount", "currency", "status"]
    list_filter = ["status", "currency", ("placed_at", admin.DateFieldListFilter)]
    search_fields = ["external_id", "customer__external_id", "customer__email"]
    raw_id_fields = ["customer"]
    date_hierarchy = "placed_at"
    show_full_result_count = False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["kind", "customer", "occurred_at"]
    list_filter = ["kind", ("occurred_at", admin.DateFieldListFilter)]
    search_fields = ["external_id", "customer__external_id", "customer__email", "kind"]
    raw_id_fields = ["customer"]
    show_full_result_count = False


@admin.register(EventKind)
class EventKindAdmin(admin.ModelAdmin):
    """Which event kinds rescore their customer within seconds (docs/realtime.md)."""

    list_display = ["name", "rescores", "description"]
    search_fields = ["name"]

    @admin.display(description="when one arrives", ordering="rescore")
    def rescores(self, kind: EventKind) -> str:
        return "rescore the customer now" if kind.rescore else "wait for the nightly run"


@admin.register(Consent)
class ConsentAdmin(admin.ModelAdmin):
    list_display = ["customer", "channel", "status", "recorded_at", "source"]
    list_filter = ["channel", "status", "source"]
    search_fields = ["customer__external_id", "customer__email"]
    raw_id_fields = ["customer"]


class ApiClientForm(forms.ModelForm):
    """Scopes as one checkbox each (the model stores a JSON list): an unknown scope is a form
    error, not a 500. A new client starts with the default scopes ticked, the personal-data ones
    (erase, export) unticked; with none ticked it is refused everywhere."""

    scopes = forms.MultipleChoiceField(
        choices=ApiScope.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        initial=[s.value for s in ApiScope if s.value not in PERSONAL_DATA_SCOPES],
        help_text="What this client may do; with none ticked it is refused everywhere. Erase and "
        "export reach personal data: grant them only to the program that handles privacy requests.",
    )

    class Meta:
        model = ApiClient
        fields = ["name", "scopes", "is_active"]


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    form = ApiClientForm
    list_display = ["name", "key_prefix", "scopes", "is_active", "created_at", "last_used_at"]
    list_filter = ["is_active"]
    readonly_fields = ["key_prefix", "created_at", "last_used_at"]
    fields = ["name", "scopes", "is_active", "key_prefix", "created_at", "last_used_at"]
    actions = ["rotate_keys"]

    def save_model(self, request: HttpRequest, obj: ApiClient, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        client, key = api_client_create(name=obj.name, scopes=list(obj.scopes or []))
        obj.pk = client.pk
        obj.key_prefix = client.key_prefix
        self.message_user(
            request,
            f"Key for '{client.name}' (shown once, copy it now): {key}",
            level=messages.WARNING,
        )

    @admin.action(description="Rotate the key of the selected clients (old keys stop working)")
    def rotate_keys(self, request: HttpRequest, queryset: Any) -> None:
        for client in queryset:
            key = api_client_rotate_key(client=client)
            self.log_change(request, client, f"Key rotated (new prefix {client.key_prefix}).")
            self.message_user(
                request, f"New key for '{client.name}' (shown once): {key}", messages.WARNING
            )
