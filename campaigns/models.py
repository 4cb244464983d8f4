"""Campaigns: rules, offers, templates, cycles, interventions (the outbox), coupons, callbacks,
responses. Invariants that matter are database constraints (see ARCHITECTURE.md)."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from customers.models import Customer, Order


def new_salt() -> str:
    return secrets.token_hex(8)


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    FINISHED = "finished", "Finished"


class Cadence(models.IntegerChoices):
    # Minutes between cycles; the beat checks every 15 minutes, so 15 is the finest cadence.
    QUARTER_HOUR = 15, "Every 15 minutes"
    HOURLY = 60, "Hourly"
    EVERY_6_HOURS = 360, "Every 6 hours"
    DAILY = 1440, "Daily"
    WEEKLY = 10080, "Weekly (Mondays)"


class ContactChannel(models.TextChoices):
    """How an intervention reaches a treated customer."""

    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    COUPON = "coupon", "Coupon code (through the API)"
    CALLBACK = "callback", "Agent callback"


class Campaign(models.Model):
    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT
    )
    starts_at = models.DateTimeField(null=True, blank=True, help_text="Empty: from now on.")
    ends_at = models.DateTimeField(null=True, blank=True, help_text="Empty: until stopped.")
    cadence_minutes = models.PositiveIntegerField(
        "cadence", choices=Cadence.choices, default=Cadence.DAILY, help_text="How often it runs."
    )
    # 10% holdout: the Braze-style default; campaigns.uplift.power sizes it for a target effect.
    control_percentage = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("10"),
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Share of matching customers held out as the control group (0-100).",
    )
    salt = models.CharField(
        max_length=32,
        default=new_salt,
        help_text="Seeds the arm assignment; never change it once the campaign has run.",
    )
    attribution_window_days = models.PositiveIntegerField(default=30)
    cooldown_days = models.PositiveIntegerField(
        default=14, help_text="A customer taken by this campaign is not taken again for N days."
    )
    priority = models.PositiveSmallIntegerField(
        default=100,
        help_text="Lower runs first and wins: a customer already taken this cycle by a campaign "
        "with a lower number is suppressed here.",
    )
    max_interventions_per_cycle = models.PositiveIntegerField(null=True, blank=True)
    max_offer_value_per_cycle = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, help_text="Sum of offer unit costs."
    )
    max_interventions_total = models.PositiveIntegerField(null=True, blank=True)
    max_offer_value_total = models.DecimalField(
        max_digits=14, decimal_places=2, null=True, blank=True, help_text="Sum of offer unit costs."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(control_percentage__gte=0) & Q(control_percentage__lte=100),
                name="campaign_control_percentage_range",
            )
        ]

    def __str__(self) -> str:
        return self.name


class OfferKind(models.TextChoices):
    PERCENT_COUPON = "percent_coupon", "Percent-off coupon"
    AMOUNT_COUPON = "amount_coupon", "Amount-off coupon"
    FREE_SHIPPING = "free_shipping", "Free shipping coupon"
    LOYALTY_POINTS = "loyalty_points", "Loyalty points"
    NONE = "none", "No offer (message only)"


COUPON_KINDS = frozenset(
    {OfferKind.PERCENT_COUPON, OfferKind.AMOUNT_COUPON, OfferKind.FREE_SHIPPING}
)


class Offer(models.Model):
    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=32, choices=OfferKind.choices, default=OfferKind.NONE)
    value = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        default=Decimal("0"),
        help_text="Percent, amount or points.",
    )
    validity_days = models.PositiveIntegerField(default=30)
    unit_cost = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        default=Decimal("0"),
        help_text="Expected cost of one offer made (for budgets and ROI).",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def issues_coupon(self) -> bool:
        return self.kind in COUPON_KINDS

    @property
    def value_text(self) -> str:
        """The value without trailing zeros: 15 rather than 15.00, 2.5 rather than 2.50."""
        text = f"{Decimal(self.value):f}"
        return text.rstrip("0").rstrip(".") if "." in text else text

    def describe(self) -> str:
        value = self.value_text
        texts: dict[str, str] = {
            OfferKind.PERCENT_COUPON: f"{value}% off",
            OfferKind.AMOUNT_COUPON: f"{value} off",
            OfferKind.FREE_SHIPPING: "free shipping",
            OfferKind.LOYALTY_POINTS: f"{value} loyalty points",
        }
        return texts.get(str(self.kind), "")


class MessageTemplate(models.Model):
    """Subject and body in Django template syntax, rendered with a restricted context:
    first_name, offer (name, kind, value, description), coupon_code, coupon_expires,
    unsubscribe_url, reasons, campaign."""

    name = models.CharField(max_length=200, unique=True)
    channel = models.CharField(max_length=16, choices=ContactChannel.choices)
    subject = models.CharField(max_length=300, blank=True, help_text="Email only.")
    body = models.TextField(help_text="Plain text (email text part, SMS text, agent script).")
    html_body = models.TextField(
        blank=True, help_text="Email HTML part; empty: made from the text body."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from campaigns.rendering import TemplateRenderError, template_validate

        for field in ("subject", "body", "html_body"):
            try:
                template_validate(source=getattr(self, field))
            except TemplateRenderError as exc:
                raise ValidationError({field: str(exc)}) from exc


class AttributeOperator(models.TextChoices):
    EQ = "eq", "="
    NE = "ne", "≠"
    GT = "gt", ">"
    GTE = "gte", "≥"
    LT = "lt", "<"
    LTE = "lte", "≤"
    IN = "in", "in (comma-separated)"
    CONTAINS = "contains", "contains"


class Rule(models.Model):
    """Conditions on the latest score, value and attributes → an action. Rules are tried in
    position order; the first that matches a customer takes them (within the campaign)."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="rules")
    position = models.PositiveIntegerField(default=0)
    name = models.CharField(max_length=200)
    tiers = models.JSONField(
        default=list,
        blank=True,
        help_text='Risk tier names, e.g. ["high", "critical"]; empty: any.',
    )
    min_probability = models.FloatField(null=True, blank=True)
    max_probability = models.FloatField(null=True, blank=True)
    min_value = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Customer value: completed-order revenue in the last 365 days.",
    )
    max_value = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    attribute_conditions = models.JSONField(
        default=list,
        blank=True,
        help_text='All must hold, e.g. [{"field": "Contract", "operator": "eq", '
        '"value": "Month-to-month"}]; operators: eq ne gt gte lt lte in contains.',
    )
    consent_channel = models.CharField(
        max_length=8,
        blank=True,
        choices=[("email", "Email"), ("sms", "SMS"), ("call", "Call")],
        help_text="Only customers who consent to this channel match (routing, not suppression).",
    )
    channel = models.CharField(max_length=16, choices=ContactChannel.choices)
    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, null=True, blank=True)
    template = models.ForeignKey(MessageTemplate, on_delete=models.PROTECT, null=True, blank=True)

    class Meta:
        ordering = ["campaign", "position", "id"]

    def __str__(self) -> str:
        return f"{self.campaign}: {self.name}"

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        if not isinstance(self.tiers, list) or not all(isinstance(t, str) for t in self.tiers):
            errors["tiers"] = "A list of tier names."
        lo, hi = self.min_probability, self.max_probability
        for name, bound in (("min_probability", lo), ("max_probability", hi)):
            if bound is not None and not 0 <= bound <= 1:
                errors[name] = "Between 0 and 1."
        if lo is not None and hi is not None and lo > hi:
            errors["max_probability"] = "Must be at least the minimum."
        if (
            self.min_value is not None
            and self.max_value is not None
            and self.min_value > self.max_value
        ):
            errors["max_value"] = "Must be at least the minimum."
        try:
            validate_attribute_conditions(self.attribute_conditions)
        except ValidationError as exc:
            errors["attribute_conditions"] = exc.messages
        if self.channel in (ContactChannel.EMAIL, ContactChannel.SMS) and not self.template_id:
            errors["template"] = "Email and SMS rules need a message template."
        if self.channel == ContactChannel.COUPON and not (self.offer and self.offer.issues_coupon):
            errors["offer"] = "The coupon channel needs an offer that issues a coupon."
        if self.template_id and self.template and self.template.channel != self.channel:
            errors["template"] = f"This template is for {self.template.channel}."
        if errors:
            raise ValidationError(errors)


def validate_attribute_conditions(conditions: Any) -> None:
    if not isinstance(conditions, list):
        raise ValidationError("A list of {field, operator, value} objects.")
    for index, item in enumerate(conditions):
        if not isinstance(item, dict) or set(item) != {"field", "operator", "value"}:
            raise ValidationError(f"#{index}: needs exactly field, operator and value.")
        if item["operator"] not in AttributeOperator.values:
            raise ValidationError(f"#{index}: unknown operator {item['operator']!r}.")
        if not isinstance(item["field"], str) or not item["field"].replace("_", "").isalnum():
            raise ValidationError(f"#{index}: field must be a plain attribute name.")


class CampaignCycle(models.Model):
    """One run of a campaign for one cycle key: the guard that makes a re-run a no-op."""

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="cycles")
    cycle_key = models.CharField(
        max_length=32, help_text="Start of the cycle, UTC (YYYYmmddTHHMM)."
    )
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    summary = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "cycle_key"], name="one_cycle_per_key")
        ]

    def __str__(self) -> str:
        return f"{self.campaign} @ {self.cycle_key}"


class Arm(models.TextChoices):
    TREATMENT = "treatment", "Treatment"
    CONTROL = "control", "Control"


class InterventionStatus(models.TextChoices):
    PENDING = "pending", "Pending (in the outbox)"
    SCHEDULED = "scheduled", "Scheduled (quiet hours)"
    SENDING = "sending", "Sending (claimed by the relay)"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"
    SUPPRESSED = "suppressed", "Suppressed"
    HELD_OUT = "held_out", "Held out (control: nothing sent)"


# Statuses that count as a contact for frequency caps, cooldown and priority — for BOTH arms
# (a held-out control counts like the message its treated twin got), so suppression stays
# identical across arms in later cycles.
COUNTED_STATUSES = (
    InterventionStatus.PENDING,
    InterventionStatus.SCHEDULED,
    InterventionStatus.SENDING,
    InterventionStatus.SENT,
    InterventionStatus.DELIVERED,
    InterventionStatus.HELD_OUT,
)


class SuppressionReason(models.TextChoices):
    ERASED = "erased", "Customer erased"
    NO_ADDRESS = "no_address", "No address for the channel"
    NO_CONSENT = "no_consent", "No consent for the channel"
    HIGHER_PRIORITY = "higher_priority_campaign", "Higher-priority campaign this cycle"
    COOLDOWN = "cooldown", "Campaign cooldown"
    FREQUENCY_CAP = "frequency_cap", "Frequency cap"
    BUDGET = "budget_exhausted", "Budget exhausted"
    # In the program-wide holdout (settings.GLOBAL_CONTROL_PERCENT): never contacted by any
    # campaign; recorded so the program report can compare it with everyone else.
    GLOBAL_CONTROL = "global_control", "Global control group (never contacted)"


class FailureReason(models.TextChoices):
    REJECTED = "provider_rejected", "Provider rejected (permanent)"
    RETRIES_EXHAUSTED = "retries_exhausted", "Transient failures, retries exhausted"
    DELIVERY_UNKNOWN = "delivery_unknown", "Worker lost while sending (not retried)"
    BOUNCED = "bounced", "Bounced or undelivered (provider report)"


class Intervention(models.Model):
    """One customer in one campaign cycle: the decision, the score it was made on, and the
    delivery state. Treatment rows are the outbox the relay delivers from."""

    # Few indexes on purpose: every index costs the dispatch's bulk insert. The composite ones
    # below cover campaign, cycle and customer lookups; rule/offer/template are looked up only
    # when one is deleted (rare admin operations).
    campaign = models.ForeignKey(
        Campaign, on_delete=models.PROTECT, related_name="interventions", db_index=False
    )
    cycle = models.ForeignKey(
        CampaignCycle, on_delete=models.PROTECT, related_name="interventions", db_index=False
    )
    rule = models.ForeignKey(
        Rule, on_delete=models.PROTECT, related_name="interventions", db_index=False
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="interventions", db_index=False
    )
    arm = models.CharField(max_length=16, choices=Arm.choices)
    channel = models.CharField(max_length=16, choices=ContactChannel.choices)
    offer = models.ForeignKey(
        Offer, on_delete=models.PROTECT, null=True, blank=True, db_index=False
    )
    template = models.ForeignKey(
        MessageTemplate, on_delete=models.SET_NULL, null=True, blank=True, db_index=False
    )
    churn_probability = models.FloatField()
    risk_tier = models.CharField(max_length=32, blank=True)
    model_version = models.CharField(max_length=64, blank=True)
    customer_value = models.FloatField(default=0, help_text="Revenue in the last 365 days.")
    offer_cost = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    status = models.CharField(max_length=16, choices=InterventionStatus.choices)
    reason = models.CharField(max_length=32, blank=True)
    detail = models.TextField(blank=True)
    send_after = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    provider_message_id = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(help_text="When the arm was assigned.")
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "cycle", "customer"], name="one_intervention_per_cycle"
            ),
            # Control customers are never contacted: the database refuses any contact status.
            models.CheckConstraint(
                condition=Q(arm="treatment") | Q(status__in=["held_out", "suppressed"]),
                name="control_never_contacted",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["suppressed", "failed"]) | ~Q(reason=""),
                name="suppressed_or_failed_has_reason",
            ),
        ]
        indexes = [
            models.Index(
                fields=["status", "send_after"],
                name="intervention_outbox",
                condition=Q(status__in=["pending", "scheduled"]),
            ),
            models.Index(fields=["customer", "created_at"], name="intervention_customer_time"),
            models.Index(fields=["campaign", "arm", "status"], name="intervention_campaign_arm"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} → {self.customer_id} ({self.arm}, {self.status})"


class Coupon(models.Model):
    code = models.CharField(max_length=32, unique=True)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="coupons")
    offer = models.ForeignKey(
        Offer, on_delete=models.PROTECT, related_name="coupons", db_index=False
    )
    intervention = models.OneToOneField(
        Intervention, on_delete=models.CASCADE, null=True, blank=True, related_name="coupon"
    )
    kind = models.CharField(max_length=32, choices=OfferKind.choices)
    value = models.DecimalField(max_digits=12, decimal_places=2)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField()
    redeemed_at = models.DateTimeField(null=True, blank=True)
    redeemed_order = models.ForeignKey(
        Order, on_delete=models.SET_NULL, null=True, blank=True, related_name="coupons"
    )
    # db_default: the dispatch bulk-inserts coupons without naming this column.
    redeemed_order_external_id = models.CharField(max_length=64, blank=True, db_default="")
    redeemed_amount = models.DecimalField(
        max_digits=12, decimal_places=2, null=True, blank=True, help_text="Order amount."
    )
    redeemed_discount = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="What the redemption cost: the discount granted (the offer cost in ROI).",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.code


class CallbackStatus(models.TextChoices):
    OPEN = "open", "Open"
    IN_PROGRESS = "in_progress", "In progress"
    DONE = "done", "Done"


class CallbackOutcome(models.TextChoices):
    REACHED_ACCEPTED = "reached_accepted", "Reached: accepted the offer"
    REACHED_DECLINED = "reached_declined", "Reached: declined"
    NO_ANSWER = "no_answer", "No answer"
    WRONG_NUMBER = "wrong_number", "Wrong number"
    DO_NOT_CALL = "do_not_call", "Do not call again"


class CallbackTask(models.Model):
    """The agent channel: call this customer and make this offer."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="callbacks")
    intervention = models.OneToOneField(
        Intervention, on_delete=models.CASCADE, related_name="callback"
    )
    assigned_agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="callbacks",
    )
    due_at = models.DateTimeField()
    status = models.CharField(
        max_length=16, choices=CallbackStatus.choices, default=CallbackStatus.OPEN
    )
    outcome = models.CharField(max_length=32, choices=CallbackOutcome.choices, blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["due_at", "-intervention__churn_probability"]
        indexes = [
            models.Index(fields=["assigned_agent", "status", "due_at"], name="callback_agent_due")
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="done") | ~Q(outcome=""), name="done_callback_has_outcome"
            )
        ]

    def __str__(self) -> str:
        return f"Call {self.customer} (due {self.due_at:%Y-%m-%d %H:%M})"


class MyCallback(CallbackTask):
    """The agent's own view of their callback tasks (admin: "My callbacks")."""

    class Meta:
        proxy = True
        verbose_name = "my callback"
        verbose_name_plural = "My callbacks"


class ResponseKind(models.TextChoices):
    DELIVERED = "delivered", "Delivered"
    OPENED = "opened", "Opened"
    CLICKED = "clicked", "Clicked"
    UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
    REDEEMED = "redeemed", "Coupon redeemed"
    CONVERTED = "converted", "Converted (order)"
    REPLIED = "replied", "Replied"
    BOUNCED = "bounced", "Bounced"
    CALLBACK_OUTCOME = "callback_outcome", "Callback outcome"


class Response(models.Model):
    """Something a customer (or an agent on their behalf) did after an intervention.
    A replay with the same idempotency key changes nothing."""

    intervention = models.ForeignKey(
        Intervention, on_delete=models.CASCADE, related_name="responses"
    )
    kind = models.CharField(max_length=32, choices=ResponseKind.choices)
    occurred_at = models.DateTimeField()
    revenue = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    order_external_id = models.CharField(max_length=64, blank=True)
    idempotency_key = models.CharField(max_length=200, unique=True)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [models.Index(fields=["intervention", "kind"], name="response_intervention_kind")]

    def __str__(self) -> str:
        return f"{self.kind} @ {self.occurred_at:%Y-%m-%d %H:%M}"


class ReportKind(models.TextChoices):
    CAMPAIGN = "campaign", "Campaign"
    CYCLE = "cycle", "Campaign cycle"
    PROGRAM = "program", "Program (global control vs everyone else)"


class ReportStatus(models.TextChoices):
    INTERIM = "interim", "Interim (attribution window still open)"
    FINAL = "final", "Final (attribution window closed)"
    EMPTY = "empty", "Nothing to measure yet"


class UpliftReport(models.Model):
    """A snapshot of what a campaign (one cycle of it, or the whole program) changed, computed
    nightly and on demand. One row per scope and day: a rerun the same day replaces it."""

    kind = models.CharField(max_length=16, choices=ReportKind.choices)
    scope_key = models.CharField(
        max_length=64, help_text="campaign-<id>, cycle-<id> or program: what was measured."
    )
    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, null=True, blank=True, related_name="uplift_reports"
    )
    cycle = models.ForeignKey(
        CampaignCycle,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="uplift_reports",
    )
    report_date = models.DateField(help_text="The day (UTC) the snapshot belongs to.")
    measured_at = models.DateTimeField(help_text="Outcomes were read as of this time.")
    status = models.CharField(max_length=16, choices=ReportStatus.choices)
    figures = models.JSONField(default=dict, blank=True)
    seconds = models.FloatField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-report_date", "scope_key"]
        constraints = [
            # The nightly run guard: two beat processes (or a rerun) update one row, never two.
            models.UniqueConstraint(fields=["scope_key", "report_date"], name="one_report_per_day")
        ]

    def __str__(self) -> str:
        return f"Uplift {self.scope_key} @ {self.report_date:%Y-%m-%d} ({self.status})"
