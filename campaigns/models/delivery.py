"""What a campaign cycle produces: cycles, interventions (the outbox), coupons, agent callbacks
and customers' responses."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from campaigns.models.setup import (
    Campaign,
    ContactChannel,
    MessageTemplate,
    Offer,
    OfferKind,
    Rule,
    Targeting,
)
from customers.models import Customer, Order


class CampaignCycle(models.Model):
    """One run of a campaign for one cycle key: the guard that makes a re-run a no-op."""

    campaign = models.ForeignKey(Campaign, on_delete=models.PROTECT, related_name="cycles")
    cycle_key = models.CharField(
        max_length=32, help_text="Start of the cycle, UTC (YYYYmmddTHHMM)."
    )
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    summary = models.JSONField(default=dict, blank=True)
    targeting = models.CharField(
        max_length=16,
        choices=Targeting.choices,
        default=Targeting.RULES,
        db_default="rules",
        help_text="How this cycle chose its customers (the report compares the two).",
    )
    uplift_model = models.ForeignKey(
        "UpliftModel", on_delete=models.PROTECT, null=True, blank=True, related_name="cycles"
    )

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


class Selection(models.TextChoices):
    """Why the customer is in the cycle: a matching rule, the uplift policy's choice, or the
    policy's random exploration share (docs/uplift.md)."""

    RULE = "rule", "Matched a rule"
    POLICY = "policy", "Chosen by the uplift policy"
    EXPLORATION = "exploration", "Random exploration (uplift policy)"


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
    # No database constraint on the campaign, cycle, rule, offer and template keys (the
    # customer's stays): PostgreSQL checks a deferred foreign key row by row at commit, and at
    # 188,000 interventions a cycle those five checks were 2.7 s of the dispatch's 7.3 s
    # COMMIT (bench/cycle.py, 1M customers). The rows they point at are the admin's
    # configuration, guarded where they are deleted: Django's PROTECT refuses, SET_NULL
    # clears the template (both run in the ORM, not in the database).
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.PROTECT,
        related_name="interventions",
        db_index=False,
        db_constraint=False,
    )
    cycle = models.ForeignKey(
        CampaignCycle,
        on_delete=models.PROTECT,
        related_name="interventions",
        db_index=False,
        db_constraint=False,
    )
    rule = models.ForeignKey(
        Rule,
        on_delete=models.PROTECT,
        related_name="interventions",
        db_index=False,
        db_constraint=False,
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="interventions", db_index=False
    )
    arm = models.CharField(max_length=16, choices=Arm.choices)
    channel = models.CharField(max_length=16, choices=ContactChannel.choices)
    offer = models.ForeignKey(
        Offer, on_delete=models.PROTECT, null=True, blank=True, db_index=False, db_constraint=False
    )
    template = models.ForeignKey(
        MessageTemplate,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_index=False,
        db_constraint=False,
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
    # The rule said "X, else Y" and this customer could not receive X: `channel` is Y, the
    # channel actually used (the uplift report breaks down by it).
    # Uplift policy cycles: how this customer was chosen and what the model expected.
    selection = models.CharField(
        max_length=16,
        choices=Selection.choices,
        default=Selection.RULE,
        db_default="rule",
    )
    predicted_uplift = models.FloatField(
        null=True, blank=True, help_text="Predicted change in P(retained) for the chosen action."
    )
    expected_increment = models.FloatField(
        null=True, blank=True, help_text="Expected incremental value net of cost (currency)."
    )
    fell_back = models.BooleanField(
        default=False,
        db_default=False,  # writers that predate the column (bulk inserts) leave it out
        help_text="The rule's first channel could not reach the customer.",
    )
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
    # Unique through Meta.constraints, not unique=True: PostgreSQL then builds one index, not a
    # second text_pattern_ops twin nobody queries (codes are looked up whole; the admin's search
    # is a case-insensitive LIKE, which neither index serves); the dispatch inserts 100,000s.
    code = models.CharField(max_length=32)
    # No database constraints on the coupon's keys (campaigns.0013, 0014): the dispatch is the
    # only writer of coupons and takes the customer and the intervention from the intervention
    # it inserts in the same transaction (which keeps its customer constraint); PostgreSQL's
    # row-by-row check of these two keys at commit was 3.8 s of a 188,000-intervention
    # dispatch. Deletes still cascade (CASCADE) or are refused (PROTECT) by the ORM.
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="coupons", db_constraint=False
    )
    offer = models.ForeignKey(
        Offer, on_delete=models.PROTECT, related_name="coupons", db_index=False, db_constraint=False
    )
    intervention = models.OneToOneField(
        Intervention,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="coupon",
        db_constraint=False,
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
        constraints = [models.UniqueConstraint(fields=["code"], name="coupon_code_unique")]

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
    # Calls made so far: "no answer" moves due_at on until settings.CALLBACK_RETRY_ATTEMPTS.
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Calls made so far.")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
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
    DISMISSED = "dismissed", "Dismissed (in-app message)"


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
    idempotency_key = models.CharField(max_length=200)
    # Whose key it is: an API client's keys are its own; internal ones (webhooks, unsubscribe
    # links, redemptions) have none. PROTECT: responses are report history, a client that
    # logged some is deactivated rather than deleted.
    client = models.ForeignKey(
        "customers.ApiClient",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [models.Index(fields=["intervention", "kind"], name="response_intervention_kind")]
        constraints = [
            models.UniqueConstraint(
                fields=["client", "idempotency_key"],
                condition=models.Q(client__isnull=False),
                name="response_key_unique_per_client",
            ),
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=models.Q(client__isnull=True),
                name="response_key_unique_internal",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} @ {self.occurred_at:%Y-%m-%d %H:%M}"


class RelayRateWindow(models.Model):
    """Messages handed to one channel's provider in one minute, counted across every relay
    process (campaigns/services/rate.py): the per-minute rate holds however many relays run."""

    channel = models.CharField(max_length=16, choices=ContactChannel.choices)
    window_start = models.DateTimeField(help_text="The minute (UTC, seconds zeroed) counted.")
    used = models.PositiveIntegerField(default=0)
    # The grant of the latest take, written by the same UPDATE that raises `used` (see rate.py).
    last_grant = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel", "window_start"], name="one_rate_window"),
        ]

    def __str__(self) -> str:
        return f"{self.channel} {self.window_start:%Y-%m-%d %H:%M}: {self.used}"


class InboxMessage(models.Model):
    """An in-app message in a customer's inbox (the in_app channel): put there by the relay
    (the intervention is then `sent`), `delivered` when the app first fetches it, read or
    dismissed through the API (each logs a response once)."""

    intervention = models.OneToOneField(
        Intervention, on_delete=models.CASCADE, related_name="inbox_message"
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="inbox_messages", db_index=False
    )
    title = models.CharField(max_length=300)
    body = models.TextField()
    deep_link = models.CharField(max_length=500, blank=True)
    image_url = models.CharField(max_length=500, blank=True)
    coupon_code = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    fetched_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    dismissed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["customer", "expires_at"], name="inbox_customer_expiry")]

    def __str__(self) -> str:
        return self.title
