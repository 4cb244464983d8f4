"""What staff set up: campaigns, offers, message templates and rules."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.text import slugify

from campaigns.money import money


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


class CampaignMode(models.TextChoices):
    """Scheduled: every cycle of its cadence, over all customers. Triggered: one customer at a
    time, right after an event rescored them (docs/realtime.md)."""

    SCHEDULED = "scheduled", "Scheduled (runs every cycle of its cadence)"
    TRIGGERED = "triggered", "Triggered (runs for a customer right after an event rescores them)"


class Targeting(models.TextChoices):
    """Rules: the first matching rule decides (risk tier, attributes, segment). Uplift policy:
    the campaign's rules are the available actions (offer × channel); the champion uplift model
    picks, per customer, the action with the largest expected incremental value net of cost,
    within the budget (docs/uplift.md)."""

    RULES = "rules", "Rules (first matching rule)"
    UPLIFT_POLICY = "uplift_policy", "Uplift policy (the action that changes most, net of cost)"


class ContactChannel(models.TextChoices):
    """How an intervention reaches a treated customer."""

    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    COUPON = "coupon", "Coupon code (through the API)"
    CALLBACK = "callback", "Agent callback"
    PUSH = "push", "Push notification (app or browser)"
    IN_APP = "in_app", "In-app message (the app's inbox)"


# Channels whose template has a title, a deep link and an optional image.
PUSH_LIKE_CHANNELS = frozenset({ContactChannel.PUSH.value, ContactChannel.IN_APP.value})


def campaign_key_from_name(name: str) -> str:
    """The key a name suggests: its slug, never only digits, never empty."""
    key = slugify(name)[:56] or "campaign"
    return f"campaign-{key}" if key.isdigit() else key


def campaign_key_unique(name: str, *, exclude_pk: int | None = None) -> str:
    """`campaign_key_from_name`, with -2, -3... when another campaign has it already."""
    base = campaign_key_from_name(name)
    others = Campaign.objects.filter(key__startswith=base)
    if exclude_pk is not None:
        others = others.exclude(pk=exclude_pk)
    taken = set(others.values_list("key", flat=True))
    key, n = base, 2
    while key in taken:
        key, n = f"{base}-{n}", n + 1
    return key


def campaign_key_validate(value: str) -> None:
    if value.isdigit():
        raise ValidationError("A key is not only digits (the API would read it as an id).")


class Campaign(models.Model):
    name = models.CharField(max_length=200, unique=True)
    key = models.SlugField(
        max_length=64,
        unique=True,
        blank=True,
        validators=[campaign_key_validate],
        help_text="A stable name for the API (letters, digits, hyphens), e.g. win-back; "
        "filled from the name when left empty.",
    )
    description = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT
    )
    starts_at = models.DateTimeField(null=True, blank=True, help_text="Empty: from now on.")
    ends_at = models.DateTimeField(null=True, blank=True, help_text="Empty: until stopped.")
    cadence_minutes = models.PositiveIntegerField(
        "cadence", choices=Cadence.choices, default=Cadence.DAILY, help_text="How often it runs."
    )
    mode = models.CharField(
        max_length=16,
        choices=CampaignMode.choices,
        default=CampaignMode.SCHEDULED,
        db_default="scheduled",
        help_text="Scheduled campaigns run every cycle; triggered ones decide for one customer "
        "within seconds of an event that rescored them (the cadence is then unused).",
    )
    reentry_days = models.PositiveIntegerField(
        "re-entry window (days)",
        default=30,
        db_default=30,
        validators=[MinValueValidator(1)],
        help_text="Triggered campaigns: a customer enters at most once per this many days "
        "(both arms; suppressed entries count too).",
    )
    targeting = models.CharField(
        max_length=16,
        choices=Targeting.choices,
        default=Targeting.RULES,
        db_default="rules",
        help_text="Rules: the first matching rule decides. Uplift policy: the champion uplift "
        "model chooses among the rules' actions by expected incremental value net of cost.",
    )
    policy_budget = models.DecimalField(
        "policy budget per cycle",
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Uplift policy: the most its chosen actions may cost per cycle (expected "
        "offer + message cost). Empty: no limit (only customers worth contacting are).",
    )
    exploration_percentage = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("5"),
        db_default=Decimal("5"),
        validators=[MinValueValidator(0), MaxValueValidator(50)],
        help_text="Uplift policy: share of contacts given to a random eligible action, so the "
        "model keeps learning where it is unsure (0-50).",
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

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.key:
            self.key = campaign_key_unique(self.name, exclude_pk=self.pk)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "The end must come after the start."})

    @property
    def is_triggered(self) -> bool:
        return self.mode == CampaignMode.TRIGGERED

    def mode_text(self) -> str:
        """The mode in words, e.g. "Triggered, once per customer per 30 days"."""
        if not self.is_triggered:
            return f"Scheduled, {self.get_cadence_minutes_display().lower()}"
        days = "day" if self.reentry_days == 1 else f"{self.reentry_days} days"
        return f"Triggered by events, once per customer per {days}"


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
        help_text="Expected cost of one offer made, in RETENTION_CURRENCY: budgets count it; the "
        "campaign's cost counts it for offers without a coupon (coupons: the discount redeemed).",
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
        # Only the kind's own text is formatted (currency formatting is the dear part, and the
        # relay describes an offer once per message).
        texts: dict[str, Callable[[], str]] = {
            OfferKind.PERCENT_COUPON: lambda: f"{self.value_text}% off",
            OfferKind.AMOUNT_COUPON: lambda: f"{money(self.value)} off",
            OfferKind.FREE_SHIPPING: lambda: "free shipping",
            OfferKind.LOYALTY_POINTS: lambda: f"{self.value_text} loyalty points",
        }
        text = texts.get(str(self.kind))
        return text() if text else ""


class MessageTemplate(models.Model):
    """Subject and body in Django template syntax, rendered with a restricted context
    (campaigns.rendering.ALLOWED_VARIABLES: first_name, customer.name, offer.description,
    coupon_code, reasons …). Email has a subject, push and in-app messages a title (kept in
    `subject`); other channels ignore it. Push and in-app also have a deep link and an image."""

    name = models.CharField(max_length=200, unique=True)
    channel = models.CharField(max_length=16, choices=ContactChannel.choices)
    subject = models.CharField(
        max_length=300,
        blank=True,
        help_text="Email: the subject; push and in-app: the title. SMS and callback scripts have "
        "none.",
    )
    body = models.TextField(
        help_text="Plain text (email text part, SMS text, agent script, push or in-app body)."
    )
    html_body = models.TextField(
        blank=True, help_text="Email HTML part; empty: made from the text body."
    )
    deep_link = models.CharField(
        max_length=500,
        blank=True,
        help_text="Push and in-app: where a tap leads (an https:// or app link; variables "
        "allowed, e.g. ?coupon={{ coupon_code }}).",
    )
    image_url = models.URLField(
        "image URL",
        max_length=500,
        blank=True,
        help_text="Push and in-app: an optional image (https://).",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from campaigns.rendering import (
            CHANNELS_WITH_SUBJECT,
            TemplateRenderError,
            template_validate,
        )

        if self.channel not in CHANNELS_WITH_SUBJECT:
            self.subject = ""  # the channel has no subject line: nothing to keep or check
        if self.channel not in PUSH_LIKE_CHANNELS:
            self.deep_link = self.image_url = ""
        for field in ("subject", "body", "html_body", "deep_link"):
            try:
                template_validate(source=getattr(self, field))
            except TemplateRenderError as exc:
                raise ValidationError({field: str(exc)}) from exc


# Channels that send a rendered message (and so need a template).
TEMPLATED_CHANNELS = frozenset(
    {ContactChannel.EMAIL, ContactChannel.SMS, ContactChannel.PUSH, ContactChannel.IN_APP}
)


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
    segment = models.JSONField(
        default=dict,
        blank=True,
        help_text="A rule of a churn model's readable student: {model_version, leaf, text, "
        "risk, customers} as they were when chosen; empty: no segment.",
    )
    consent_channel = models.CharField(
        max_length=8,
        blank=True,
        choices=[
            ("email", "Email"),
            ("sms", "SMS"),
            ("call", "Call"),
            ("push", "Push"),
            ("in_app", "In-app"),
        ],
        help_text="Only customers who consent to this channel match (routing, not suppression).",
    )
    channel = models.CharField(max_length=16, choices=ContactChannel.choices)
    offer = models.ForeignKey(Offer, on_delete=models.PROTECT, null=True, blank=True)
    template = models.ForeignKey(MessageTemplate, on_delete=models.PROTECT, null=True, blank=True)
    # "Push, else email": a customer the channel cannot reach (no device/address, no consent)
    # gets the fallback channel instead; the intervention records the channel actually used.
    fallback_channel = models.CharField(
        max_length=16,
        blank=True,
        choices=ContactChannel.choices,
        help_text="When the customer cannot receive the channel (no address or device, no "
        "consent): use this one instead. Empty: no fallback.",
    )
    fallback_template = models.ForeignKey(
        MessageTemplate,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="The message of the fallback channel.",
    )

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
        if self.channel in TEMPLATED_CHANNELS and not self.template_id:
            errors["template"] = "Email, SMS, push and in-app rules need a message template."
        if self.channel == ContactChannel.COUPON and not (self.offer and self.offer.issues_coupon):
            errors["offer"] = "The coupon channel needs an offer that issues a coupon."
        if self.template_id and self.template and self.template.channel != self.channel:
            errors["template"] = f"This template is for {self.template.channel}."
        fallback = self.fallback_channel
        if fallback and fallback == self.channel:
            errors["fallback_channel"] = "The fallback must be another channel."
        elif fallback in (ContactChannel.COUPON, ContactChannel.CALLBACK):
            errors["fallback_channel"] = (
                "A fallback is a message channel: email, SMS, push or in-app."
            )
        elif fallback and not self.fallback_template_id:
            errors["fallback_template"] = "The fallback channel needs a message template."
        elif fallback and self.fallback_template and self.fallback_template.channel != fallback:
            errors["fallback_template"] = f"This template is for {self.fallback_template.channel}."
        elif not fallback and self.fallback_template_id:
            errors["fallback_template"] = "Choose a fallback channel for this template."
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
