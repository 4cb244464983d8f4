"""Who the customers are and what they did: customers, orders, events, consent, API clients."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Now
from django.utils import timezone


class Customer(models.Model):
    # Uniqueness and indexes live in Meta: unique=True / db_index=True on a text column make
    # PostgreSQL keep a second text_pattern_ops index that nothing queries, and every scoring
    # run rewrites these rows, paying for each index.
    external_id = models.CharField(
        max_length=64, help_text="The customer's id in the client's CRM."
    )
    name = models.CharField(max_length=200, blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=32, blank=True)
    time_zone = models.CharField(
        max_length=64, default="UTC", help_text="IANA name, e.g. Europe/Paris; for quiet hours."
    )
    country = models.CharField(max_length=64, blank=True)
    signup_date = models.DateField(null=True, blank=True)
    attributes = models.JSONField(
        default=dict, blank=True, help_text="Any extra columns the client sends."
    )
    erased = models.BooleanField(
        default=False, help_text="Personal data erased on request: never contacted."
    )
    # The latest churn score, copied here by each scoring run for fast filtering.
    churn_probability = models.FloatField(null=True, blank=True)
    risk_tier = models.CharField(max_length=32, blank=True)
    scored_at = models.DateTimeField(null=True, blank=True)
    score_model_version = models.CharField(max_length=64, blank=True)
    # The leaf of that model's readable student the customer fell in (a campaign segment).
    score_student_leaf = models.SmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["external_id"]
        constraints = [
            models.UniqueConstraint(fields=["external_id"], name="customer_external_id_unique")
        ]
        # No index on the latest-score columns: every scoring run rewrites them for every
        # customer, and with no index on them (and room left on each page, migration 0005's
        # fillfactor) PostgreSQL updates the rows in place (HOT) without touching any index:
        # about 5x cheaper. Campaign rules filter them with a scan, once per dispatch.
        indexes = [models.Index(fields=["email"], name="customer_email")]

    def __str__(self) -> str:
        return f"{self.name or self.external_id}"


class CustomerAttributeVersion(models.Model):
    """A customer's attributes as they were before a change: valid until `valid_until`.

    Written only when an import or the API changes an existing customer's attributes, so a
    first import costs nothing. The attributes as of a time t are those of the earliest
    version with valid_until > t, else the current ones (scoring.ml.features reads them so,
    and a change after a training cutoff never reaches a training feature)."""

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="attribute_versions", db_index=False
    )
    attributes = models.JSONField(default=dict)
    valid_until = models.DateTimeField(help_text="When these attributes were replaced.")

    class Meta:
        ordering = ["customer_id", "valid_until"]
        indexes = [
            models.Index(fields=["customer", "valid_until"], name="customer_attr_version"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} until {self.valid_until:%Y-%m-%d %H:%M}"


class OrderStatus(models.TextChoices):
    COMPLETED = "completed", "Completed"
    REFUNDED = "refunded", "Refunded"
    CANCELLED = "cancelled", "Cancelled"


class Order(models.Model):
    # Unique through Meta.constraints, not unique=True: PostgreSQL then builds one index, not a
    # second text_pattern_ops twin nobody queries; each index slows the bulk import.
    external_id = models.CharField(max_length=64)
    # No index of its own: order_customer_time_cover (customer, placed_at…) serves lookups.
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="orders", db_index=False
    )
    placed_at = models.DateTimeField()
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    currency = models.CharField(max_length=3, default="USD")
    status = models.CharField(
        max_length=16, choices=OrderStatus.choices, default=OrderStatus.COMPLETED
    )
    item_count = models.PositiveIntegerField(default=1)
    discount_amount = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    category = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-placed_at"]
        # Covering (PostgreSQL): scoring reads a chunk of customers' orders with an index-only
        # range scan, so a chunk costs its own rows instead of a pass over the whole table
        # (orders arrive in time order, so one customer's rows are spread over every page).
        # Every column scoring reads must be here, the order's id too (order versions are
        # matched by it): one missing column and each chunk scans all orders (at 10M orders,
        # 20 chunks read 200M rows; tests/customers/test_selectors.py checks the plan).
        indexes = [
            models.Index(
                fields=["customer", "placed_at"],
                include=["amount", "status", "discount_amount", "item_count", "id"],
                name="order_customer_time_cover",
            )
        ]
        constraints = [
            models.UniqueConstraint(fields=["external_id"], name="order_external_id_unique"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="order_amount_not_negative"),
            models.CheckConstraint(
                condition=Q(discount_amount__gte=0), name="order_discount_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.external_id


class OrderVersion(models.Model):
    """An order's amount, items and status as they were before a later change (a refund, a
    cancellation, a corrected file): valid until `valid_until`. Written when an order-level
    import changes an existing order (valid until the import) and when line refunds change an
    order (valid until the latest of those refunds). Features as of a cutoff read the earliest
    version with valid_until > cutoff instead of the order's current values."""

    order = models.ForeignKey(
        Order, on_delete=models.CASCADE, related_name="versions", db_index=False
    )
    amount = models.DecimalField(max_digits=12, decimal_places=2)
    status = models.CharField(max_length=16, choices=OrderStatus.choices)
    item_count = models.PositiveIntegerField()
    discount_amount = models.DecimalField(max_digits=12, decimal_places=2)
    valid_until = models.DateTimeField(help_text="When these values were replaced.")

    class Meta:
        ordering = ["order_id", "valid_until"]
        indexes = [models.Index(fields=["order", "valid_until"], name="order_version")]

    def __str__(self) -> str:
        return f"{self.order_id} until {self.valid_until:%Y-%m-%d %H:%M}"


class Product(models.Model):
    """One product of the client's catalogue, keyed by the client's id (e.g. a stock code)."""

    external_id = models.CharField(max_length=64, help_text="The client's id, e.g. a stock code.")
    name = models.CharField(max_length=200, blank=True)
    category = models.CharField(max_length=100, blank=True)
    price = models.DecimalField(
        max_digits=12, decimal_places=3, null=True, blank=True, help_text="The latest unit price."
    )
    active = models.BooleanField(default=True)
    # When the name and price were last taken from a sale line: a line-level import only lets a
    # later sale change them, so re-importing a file (or an older one) changes nothing.
    last_sold_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["external_id"]
        constraints = [
            models.UniqueConstraint(fields=["external_id"], name="product_external_id_unique"),
            models.CheckConstraint(
                condition=Q(price__gte=0) | Q(price__isnull=True), name="product_price_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.external_id


class OrderLine(models.Model):
    """One line of an order. `line_no` is the line's place among its invoice's lines in the
    file (1, 2, …), so importing the same file again finds the same rows."""

    # No index of its own: order_line_unique and order_line_order_product lead with the order.
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines", db_index=False)
    line_no = models.PositiveIntegerField()
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="lines")
    quantity = models.PositiveIntegerField()
    unit_price = models.DecimalField(max_digits=12, decimal_places=3)
    refunded_quantity = models.PositiveIntegerField(
        default=0, help_text="Units cancelled later by a cancellation invoice."
    )

    class Meta:
        ordering = ["order", "line_no"]
        # Matching a cancellation walks the customer's orders (newest first) and probes each
        # for the product: one index lookup per order instead of a bitmap of all its lines.
        indexes = [models.Index(fields=["order", "product"], name="order_line_order_product")]
        constraints = [
            models.UniqueConstraint(fields=["order", "line_no"], name="order_line_unique"),
            models.CheckConstraint(
                condition=Q(unit_price__gte=0), name="order_line_price_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(refunded_quantity__lte=F("quantity")),
                name="order_line_refund_within_quantity",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} #{self.line_no}"


class LineRefund(models.Model):
    """One line of a cancellation invoice: units of a product given back by a customer.

    Matched to the customer's most recent earlier order line of the same product (`line`),
    whose `refunded_quantity` it counts towards; unmatched ones make up a refunded order named
    after the cancellation invoice (see docs/importing.md)."""

    external_id = models.CharField(
        max_length=64, help_text="The cancellation invoice, e.g. C536379."
    )
    line_no = models.PositiveIntegerField()
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="line_refunds", db_index=False
    )
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="refunds")
    quantity = models.PositiveIntegerField(help_text="Units given back (positive).")
    unit_price = models.DecimalField(max_digits=12, decimal_places=3)
    refunded_at = models.DateTimeField()
    line = models.ForeignKey(
        OrderLine, on_delete=models.SET_NULL, null=True, blank=True, related_name="refunds"
    )

    class Meta:
        ordering = ["refunded_at"]
        indexes = [models.Index(fields=["customer", "product"], name="line_refund_customer")]
        constraints = [
            models.UniqueConstraint(fields=["external_id", "line_no"], name="line_refund_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.external_id} #{self.line_no}"


class Event(models.Model):
    external_id = models.CharField(
        max_length=64,
        help_text="The client's event id; derived from the row when the client sends none.",
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="events", db_index=False
    )
    kind = models.CharField(max_length=64, help_text="e.g. visit, support_ticket, complaint.")
    occurred_at = models.DateTimeField()
    properties = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [
            # Covering, like the orders' index: scoring reads (customer, kind, time) only.
            models.Index(
                fields=["customer", "occurred_at"], include=["kind"], name="event_customer_cover"
            ),
            models.Index(fields=["kind", "occurred_at"], name="event_kind_time"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["external_id"], name="event_external_id_unique")
        ]

    def __str__(self) -> str:
        return f"{self.kind} @ {self.occurred_at:%Y-%m-%d %H:%M}"


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    CALL = "call", "Call"
    PUSH = "push", "Push notifications"
    IN_APP = "in_app", "In-app messages"


class ConsentStatus(models.TextChoices):
    GRANTED = "granted", "Granted"
    REVOKED = "revoked", "Revoked"


class Consent(models.Model):
    """The current consent of one customer for one channel.

    No row means the client's default for that channel (settings.CONSENT_DEFAULTS).
    """

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="consents")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    status = models.CharField(max_length=8, choices=ConsentStatus.choices)
    recorded_at = models.DateTimeField(
        help_text="When the customer gave or revoked consent (never later than received_at)."
    )
    # Set by the database, so every writer (bulk inserts too) stamps it the same way.
    received_at = models.DateTimeField(db_default=Now(), help_text="When we received it.")
    source = models.CharField(
        max_length=64, help_text="Where it came from: api, import, admin, unsubscribe_link…"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer", "channel"], name="one_consent_per_channel"),
            # A claimed time later than the arrival would outrank statements made after it.
            models.CheckConstraint(
                condition=Q(recorded_at__lte=F("received_at")),
                name="consent_recorded_not_after_received",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel}: {self.status}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self._stamp_arrival(timezone.now())
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "received_at", "recorded_at"}
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """An edit (e.g. in the admin) is a statement received now; a future time is refused."""
        now = timezone.now()
        skew = timedelta(seconds=settings.CONSENT_CLOCK_SKEW_SECONDS)
        if self.recorded_at and self.recorded_at > now + skew:
            raise ValidationError({"recorded_at": "must not be in the future"})
        self._stamp_arrival(now)

    def _stamp_arrival(self, now: datetime) -> None:
        self.received_at = now
        if self.recorded_at and self.recorded_at > now:
            self.recorded_at = now  # within the clock-skew allowance: kept no later than arrival


# --- devices: where push notifications go (issue 13; docs/channels.md) -------------------------


class DevicePlatform(models.TextChoices):
    WEB = "web", "Web browser (Web Push)"
    ANDROID = "android", "Android app (FCM)"
    IOS = "ios", "iOS app (FCM)"


class DeviceStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    UNREGISTERED = "unregistered", "Unregistered"


class Device(models.Model):
    """One app install or browser subscription of a customer that push notifications reach.

    `token` identifies it: the FCM registration token (android, ios) or the Web Push
    subscription's endpoint URL (web, with its `p256dh` and `auth` keys). Registering the same
    token again refreshes the row (customers.services.device_register)."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="devices")
    platform = models.CharField(max_length=8, choices=DevicePlatform.choices)
    token = models.TextField(help_text="FCM registration token, or the Web Push endpoint URL.")
    p256dh = models.CharField(
        max_length=200, blank=True, help_text="Web Push: the subscription's public key."
    )
    auth = models.CharField(
        max_length=64, blank=True, help_text="Web Push: the subscription's auth secret."
    )
    status = models.CharField(
        max_length=16, choices=DeviceStatus.choices, default=DeviceStatus.ACTIVE
    )
    unregistered_reason = models.CharField(max_length=300, blank=True)
    unregistered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(help_text="When the app last registered this token.")

    class Meta:
        ordering = ["-last_seen_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["token"], name="device_token_unique")]
        indexes = [models.Index(fields=["customer", "status"], name="device_customer_status")]

    def __str__(self) -> str:
        return f"{self.get_platform_display()} ({self.status})"


# --- API clients --------------------------------------------------------------------------------


class ApiScope(models.TextChoices):
    CUSTOMERS_READ = "customers:read", "Read customers and scores"
    CUSTOMERS_WRITE = "customers:write", "Write customers, orders, events and consent"
    RESPONSES_WRITE = "responses:write", "Log campaign responses and redeem coupons"
    REPORTS_READ = "reports:read", "Read campaign reports"
    CUSTOMERS_ERASE = "customers:erase", "Erase a customer's personal data (irreversible)"
    CUSTOMERS_EXPORT = "customers:export", "Export everything held about a customer"


# Granted only by name: a client created with the default scopes (and every client created
# before these existed) cannot erase customers or read their whole file.
PERSONAL_DATA_SCOPES = frozenset({ApiScope.CUSTOMERS_ERASE.value, ApiScope.CUSTOMERS_EXPORT.value})


class ApiClient(models.Model):
    """A program that calls the API. Its key is shown once and stored only as a SHA-256 hash."""

    name = models.CharField(max_length=100, unique=True)
    key_prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # DRF's throttles and permissions treat request.user as a user; an API client is one.
    @property
    def is_authenticated(self) -> bool:
        return True

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])


# --- realtime (issue 14): event kinds that trigger a rescore ---------------------------------


class EventKind(models.Model):
    """An event kind staff configure: whether its arrival (API or import) rescores the customer
    at once (docs/realtime.md). Kinds not listed here never trigger a rescore."""

    # A refunded order (API or import) is looked up under this name.
    REFUND = "refund"

    name = models.CharField(
        max_length=64,
        unique=True,
        help_text="The event's `kind` as clients send it, e.g. complaint; 'refund' stands for "
        "a refunded order.",
    )
    rescore = models.BooleanField(
        default=True, help_text="Rescore the customer within seconds when such an event arrives."
    )
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "event kind"

    def __str__(self) -> str:
        return f"{self.name} ({'rescores' if self.rescore else 'no rescore'})"
