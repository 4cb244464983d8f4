"""The churn model registry, risk tiers, scoring runs and per-customer score history."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from common.db.fields import TextJSONField
from customers.models import Customer


class TierMode(models.TextChoices):
    RANK = "rank", "Rank share (top % of scored customers)"
    BAND = "band", "Probability band (p ≥ bound)"


class RiskTier(models.Model):
    """A risk tier: a share of a run's scorable customers counted from the most at risk (rank),
    or a probability band; tried from the most severe down, the least severe takes the rest
    (scoring.ml.tiers)."""

    name = models.CharField(max_length=32, unique=True)
    severity = models.PositiveSmallIntegerField(
        unique=True, help_text="Higher is more severe; tiers are tried and listed in this order."
    )
    mode = models.CharField(max_length=8, choices=TierMode.choices, default=TierMode.RANK)
    share = models.FloatField(
        null=True,
        blank=True,
        verbose_name="rank share (%)",
        help_text="Rank tiers: share of scored customers (stored 0–1, typed in % in the "
        "admin: 5 = the top 5%). Empty for the least severe tier, which takes the rest.",
    )
    # Not unique: only band tiers use it, and validate_tier_rules keeps their bands apart.
    min_probability = models.FloatField(
        default=0.0,
        verbose_name="band from (%)",
        help_text="Band tiers: lower bound of the probability, inclusive (stored 0–1).",
    )
    color = models.CharField(max_length=16, default="#888888", help_text="Shown in charts.")

    class Meta:
        ordering = ["-severity"]
        constraints = [
            models.CheckConstraint(
                condition=Q(min_probability__gte=0) & Q(min_probability__lt=1),
                name="tier_bound_in_unit_interval",
            ),
            models.CheckConstraint(
                condition=Q(share__isnull=True) | (Q(share__gt=0) & Q(share__lte=1)),
                name="tier_share_in_unit_interval",
            ),
        ]

    def __str__(self) -> str:
        if self.mode == TierMode.RANK and self.share is not None:
            return f"{self.name} (top {self.share:.0%})"
        if self.mode == TierMode.BAND:
            return f"{self.name} (p ≥ {self.min_probability:.0%})"
        return f"{self.name} (the rest)"


class ModelStatus(models.TextChoices):
    CANDIDATE = "candidate", "Candidate"
    ACTIVE = "active", "Active"
    RETIRED = "retired", "Retired"


class ChurnModel(models.Model):
    """A trained model: the registry row; the fitted pipeline is an artifact file (skops)."""

    version = models.CharField(max_length=64, unique=True)
    status = models.CharField(
        max_length=16, choices=ModelStatus.choices, default=ModelStatus.CANDIDATE
    )
    candidate = models.CharField(max_length=100, help_text="Name of the selected candidate.")
    algorithm = models.CharField(max_length=100)
    sampler = models.CharField(max_length=100)
    parameters = models.JSONField(default=dict)
    feature_spec = models.JSONField(default=dict, help_text="numeric and categorical inputs")
    feature_names = models.JSONField(default=list)
    label_definition = models.JSONField(default=dict)
    training_window = models.JSONField(default=dict)
    training_rows = models.PositiveIntegerField(default=0)
    positive_rate = models.FloatField(default=0)
    metrics = models.JSONField(default=dict, help_text="Out-of-fold metrics of the selection.")
    candidates = models.JSONField(default=list, help_text="Every candidate's report.")
    holdout_metrics = models.JSONField(
        default=dict, help_text="Champion/challenger comparison on the same holdout."
    )
    validation_key = models.CharField(
        max_length=64, blank=True, help_text="Identifies the data the model was validated on."
    )
    library_versions = models.JSONField(default=dict)
    threshold = models.FloatField(help_text="Decision threshold chosen out-of-fold.")
    reference = models.JSONField(default=dict, help_text="Training distributions, for drift.")
    artifact_path = models.CharField(max_length=500)
    artifact_sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    notes = models.TextField(blank=True)
    transfer = models.JSONField(
        default=dict,
        blank=True,
        help_text="Transfer from another model (churn_train --transfer-from): the source, "
        "every method's out-of-fold figures and the one kept; or where an imported model "
        "came from (churn_import).",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="active"), name="one_active_churn_model"
            )
        ]

    def __str__(self) -> str:
        return f"{self.version} ({self.status})"


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class RunKind(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled (every customer)"
    EVENTS = "events", "Event-triggered rescores (one customer at a time)"


class ScoringRun(models.Model):
    run_key = models.CharField(
        max_length=100,
        unique=True,
        help_text="One run per key (e.g. nightly-2026-11-24): a re-run cannot double it.",
    )
    model = models.ForeignKey(ChurnModel, on_delete=models.PROTECT, related_name="runs")
    as_of = models.DateTimeField()
    # Event-triggered rescores of a day and model gather under one "events" run (docs/realtime.md);
    # tiers, drift and "the latest run" are those of scheduled runs only.
    kind = models.CharField(
        max_length=16, choices=RunKind.choices, default=RunKind.SCHEDULED, db_default="scheduled"
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.RUNNING)
    customers_total = models.PositiveIntegerField(default=0)
    customers_scored = models.PositiveIntegerField(default=0)
    customers_not_scorable = models.PositiveIntegerField(
        default=0, help_text="Scored rows without a probability (see CustomerScore.scorable)."
    )
    chunks_total = models.PositiveIntegerField(default=0)
    chunks_done = models.PositiveIntegerField(default=0)
    tier_counts = models.JSONField(default=dict)
    # Who gets reasons (scoring.services.runs.reasons_threshold): the chunks explain the
    # customers at or above `reasons_from` (empty: the tiers' probability bound), and the
    # finish explains any customer ranked above the least severe tier whom they did not.
    reasons_from = models.FloatField(
        null=True,
        blank=True,
        help_text="The chunks explained customers with at least this probability (empty: the "
        "second tier's probability bound).",
    )
    at_risk_from = models.FloatField(
        null=True,
        blank=True,
        help_text="The lowest probability of a customer in a tier above the least severe, set "
        "at the finish: the next run's reasons start a little below it.",
    )
    drift = models.JSONField(default=dict)
    timings = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.run_key} ({self.status})"


class CustomerScore(models.Model):
    # A scoring run inserts one row per customer, so each index and check is paid a million
    # times a night. No single-column indexes on the keys: one_score_per_run (run, customer)
    # serves lookups by run and score_customer_latest (customer, scored_at) by customer. No
    # database foreign-key constraints either: PostgreSQL checks them row by row at commit
    # with a locking lookup of the customer (about 0.4 s per 50,000 scores). The chunk writes
    # scores only for customers it has just read, and Django still cascades deletes of runs
    # and customers (on_delete) to their scores.
    run = models.ForeignKey(
        ScoringRun,
        on_delete=models.CASCADE,
        related_name="scores",
        db_index=False,
        db_constraint=False,
    )
    customer = models.ForeignKey(
        Customer,
        on_delete=models.CASCADE,
        related_name="scores",
        db_index=False,
        db_constraint=False,
    )
    # NULL when the model cannot score the customer honestly (scorable=False): a model trained
    # on a behaviour label knows nothing of customers without an order before the cutoff.
    probability = models.FloatField(null=True, blank=True)
    tier = models.CharField(max_length=32)
    scorable = models.BooleanField(default=True, db_default=True)
    not_scorable_reason = models.CharField(max_length=200, blank=True, default="", db_default="")
    reasons = TextJSONField(default=list)
    # The leaf of the model's readable student (scoring.ml.distill) the customer falls in: a
    # campaign rule can target one ("model_segment"). NULL: not scorable, or no student.
    student_leaf = models.SmallIntegerField(null=True, blank=True)
    # The waterfall of the customer's probability (scoring.ml.explain.attributions_json):
    # {"baseline", "method", "items": [[phrase, points], ...], "rest"}; {} when not explained.
    attributions = TextJSONField(default=dict, db_default={})
    scored_at = models.DateTimeField()
    # What rescored the customer: empty for a scheduled run; the event kind (e.g. complaint)
    # for an event-triggered rescore, which may score one customer several times a day.
    trigger = models.CharField(max_length=64, blank=True, default="", db_default="")
    # 0 in a scheduled run (so (run, customer) stays unique there: the guard of a doubled
    # chunk); an event rescore's own number (microseconds of its time), so one customer can be
    # rescored many times under its day's events run. Third in the unique index, which keeps
    # serving lookups by run and by (run, customer) as before.
    sequence = models.BigIntegerField(default=0, db_default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["run", "customer", "sequence"], name="one_score_per_run"
            )
        ]
        indexes = [models.Index(fields=["customer", "-scored_at"], name="score_customer_latest")]

    def __str__(self) -> str:
        if self.probability is None:
            return f"{self.customer_id}: not scorable"
        return f"{self.customer_id}: {self.probability:.1%} ({self.tier})"


class ScoringChunk(models.Model):
    """One written chunk of a run: its scores, its scorable customers and their features and
    probabilities counted into the drift reference's bins, so the run's finish counts and
    measures drift over everyone without reading a million scores again."""

    run = models.ForeignKey(ScoringRun, on_delete=models.CASCADE, related_name="chunks")
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()
    customers = models.PositiveIntegerField()
    feature_counts = models.JSONField(default=dict)
    # Null on chunks written before these were counted: the finish then counts in SQL.
    scores = models.PositiveIntegerField(
        null=True, help_text="Score rows written (scorable or not)."
    )
    score_counts = models.JSONField(
        null=True,
        blank=True,
        help_text="The scorable probabilities counted into the drift reference's score bins, "
        "then the missing ones ([] without a reference).",
    )
    # The chunk's scorable scores as packed records (scoring.services.runs.CHUNK_SCORES:
    # customer id, probability, tier as its position in `tier_names`), written with them:
    # the run's finish re-tiers from these instead of reading a million scores back. Null on
    # chunks written before (the finish then reads the scores).
    scored = models.BinaryField(null=True, editable=False)
    tier_names = models.JSONField(default=list, blank=True, editable=False)
    written_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "first_id"], name="one_chunk_per_range")
        ]

    def __str__(self) -> str:
        return f"{self.run_id}: {self.first_id}–{self.last_id}"


class RecommendationRun(models.Model):
    """One refresh of every customer's product recommendations (scoring/services/
    recommendations.py): the method, the fitted model's version and the fallback list customers
    without a stored row get (the most bought products of the last weeks)."""

    version = models.CharField(max_length=100)
    method = models.CharField(max_length=64)
    as_of = models.DateTimeField(help_text="Order lines up to this time were read.")
    customers = models.PositiveIntegerField(default=0)
    products = models.PositiveIntegerField(default=0)
    lines = models.PositiveIntegerField(default=0)
    fallback_product_ids = models.JSONField(default=list)
    seconds = models.FloatField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.version} ({self.customers:,} customers)"


class CustomerRecommendation(models.Model):
    """A customer's top products, best first (product ids, and what put each there: bought
    before, bought together, popular), from the latest recommendation run."""

    customer = models.OneToOneField(
        Customer, on_delete=models.CASCADE, primary_key=True, related_name="recommendation"
    )
    run = models.ForeignKey(
        RecommendationRun, on_delete=models.CASCADE, related_name="rows", db_index=False
    )
    product_ids = models.JSONField(default=list)
    sources = models.JSONField(default=list)

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.product_ids}"


class OrderStatistics(models.Model):
    """A customer's order statistics as of a date (`scoring.ml.features.order_statistics`),
    kept between nightly runs so a run reads one narrow row instead of the customer's orders.

    A row is used for a scoring date d when basis ≤ d < valid_until (nanoseconds since the
    epoch, UTC, as the features compute them) and no `OrderStatisticsMark` of the customer
    is left. Written only by scoring (scoring.services.statistics); on PostgreSQL only (on
    SQLite scoring reads every order; settings.SCORING_ORDER_STATISTICS). No foreign key: rows
    of deleted customers are deleted with their orders (migration scoring.0013). A change to
    what `order_statistics` computes must come with a migration that empties this table.
    """

    customer_id = models.BigIntegerField(primary_key=True)
    # The xmax of the snapshot the orders were read under (`pg_snapshot_xmax`): of two rows
    # for the same date, the one read later (a larger xmax) wins.
    snapshot_xmax = models.BigIntegerField()
    basis_ns = models.BigIntegerField()
    valid_until_ns = models.BigIntegerField()
    # The other statistics (`scoring.ml.features.STATISTIC_COLUMNS` after the two times), one
    # fixed-width record (`scoring.services.statistics.PACKED`): a chunk reads 50,000 of them as
    # one value (`string_agg`), where a column each cost PostgreSQL three times as much to
    # gather (105 against 36 ms a chunk, docs/scaling.md, ninth session).
    packed = models.BinaryField()

    class Meta:
        verbose_name_plural = "order statistics"

    def __str__(self) -> str:
        return f"order statistics of customer {self.customer_id}"


class OrderStatisticsMark(models.Model):
    """ "This customer's orders changed": appended by PostgreSQL triggers on the orders table
    (migration scoring.0013) for every customer a statement inserts, changes or deletes orders
    of, with the writing transaction's id (`pg_current_xact_id`). Append-only, so writers of
    orders never wait for each other or for scoring. A run that computed a customer's
    statistics from a read that saw that transaction deletes the mark with the new row; a
    mark it did not see stays, and the next run reads the orders again."""

    customer_id = models.BigIntegerField(db_index=True)
    xid = models.BigIntegerField()

    def __str__(self) -> str:
        return f"orders of customer {self.customer_id} changed (transaction {self.xid})"
