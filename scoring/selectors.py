"""Reused reads of scores and models (campaigns read scores only through here)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, F, OuterRef, Q, Subquery

from common.db.lookups import AnyOf
from customers.models import Customer, Product
from scoring.ml.tiers import DEFAULT_TIER_RULES, TierRule, by_severity
from scoring.models import (
    ChurnModel,
    CustomerRecommendation,
    CustomerScore,
    ModelStatus,
    RecommendationRun,
    RiskTier,
    RunKind,
    RunStatus,
    ScoringRun,
)


def churn_model_active() -> ChurnModel | None:
    return ChurnModel.objects.filter(status=ModelStatus.ACTIVE).first()


def risk_tier_bands() -> list[tuple[str, float]]:
    """[(name, min_probability)] ordered by bound; the defaults if none are configured."""
    bands = list(
        RiskTier.objects.order_by("min_probability").values_list("name", "min_probability")
    )
    return bands or list(DEFAULT_TIERS)


DEFAULT_TIERS = (("low", 0.0), ("medium", 0.3), ("high", 0.5), ("critical", 0.7))


def risk_tier_edges() -> tuple[list[float], list[str]]:
    """The tiers as `assign_tiers` takes them: inner edges (every bound but the lowest) and
    names, ordered by bound."""
    bands = risk_tier_bands()
    return [bound for _, bound in bands][1:], [name for name, _ in bands]


def risk_tier_rules() -> list[TierRule]:
    """The configured tiers as `scoring.ml.tiers` takes them, most severe first (the defaults
    if none are configured)."""
    rules = [
        TierRule(
            name=t.name,
            severity=t.severity,
            mode=t.mode,
            share=t.share,
            min_probability=t.min_probability,
        )
        for t in RiskTier.objects.all()
    ]
    return by_severity(rules or DEFAULT_TIER_RULES)


def scoring_run_latest() -> ScoringRun | None:
    """The latest completed scoring run: the one whose tiers the customers carry."""
    return (
        ScoringRun.objects.filter(status=RunStatus.COMPLETED, kind=RunKind.SCHEDULED)
        .select_related("model")
        .order_by("-finished_at", "-pk")
        .first()
    )


def customer_latest_reasons(*, customer_ids: Iterable[int]) -> dict[int, list[str]]:
    """The reasons of each customer's latest score (customers never scored are absent)."""
    ids = list(customer_ids)
    latest = (
        CustomerScore.objects.filter(customer_id=OuterRef("customer_id"))
        .order_by("-scored_at", "-pk")
        .values("pk")[:1]
    )
    found: dict[int, list[str]] = {}
    # 5,000 ids per query: under SQLite's parameter limit and cheap for PostgreSQL to plan.
    for start in range(0, len(ids), 5000):
        rows = CustomerScore.objects.filter(
            AnyOf(F("customer_id"), ids[start : start + 5000]), pk=Subquery(latest)
        ).values_list("customer_id", "reasons")
        found.update(rows)
    return found


def customer_latest_score(*, customer: Customer) -> CustomerScore | None:
    return (
        CustomerScore.objects.filter(customer=customer)
        .select_related("run__model")
        .order_by("-scored_at", "-pk")
        .first()
    )


def score_histogram(*, run: ScoringRun, bins: int = 20) -> list[int]:
    """How many of the run's customers fall in each of `bins` equal probability bands (the
    last band includes 1.0), counted by the database in one query."""
    edges = [i / bins for i in range(1, bins)]
    counted = CustomerScore.objects.filter(run=run, probability__isnull=False).aggregate(
        total=Count("pk"),
        **{f"lt{i}": Count("pk", filter=Q(probability__lt=e)) for i, e in enumerate(edges)},
    )
    below = [0] + [counted[f"lt{i}"] or 0 for i in range(len(edges))] + [counted["total"] or 0]
    return [below[i + 1] - below[i] for i in range(bins)]


def customer_recommended_products(
    *, customer_ids: Iterable[int], limit: int = 3
) -> dict[int, list[Product]]:
    """Each customer's first `limit` recommended products that are still sold, from the latest
    recommendation run; a customer without a stored list gets the run's fallback (popular)
    list. Empty when no run has happened (the shop has no order lines)."""
    run = RecommendationRun.objects.order_by("-created_at").first()
    ids = list(customer_ids)
    if run is None or not ids:
        return {}
    stored: dict[int, list[int]] = {}
    for start in range(0, len(ids), 5000):
        stored.update(
            CustomerRecommendation.objects.filter(
                AnyOf(F("customer_id"), ids[start : start + 5000])
            ).values_list("customer_id", "product_ids")
        )
    fallback = [int(p) for p in run.fallback_product_ids]
    wanted = {p for lists in stored.values() for p in lists} | set(fallback)
    sold = Product.objects.filter(pk__in=wanted, active=True).in_bulk()
    return {
        customer: [sold[p] for p in stored.get(customer, fallback) if p in sold][:limit]
        for customer in ids
    }


def customer_recommendation_rows(
    *, customer: Customer
) -> tuple[RecommendationRun | None, list[tuple[Product, str]]]:
    """The latest recommendation run and the customer's stored list as (product, why) pairs,
    best first, products no longer sold left out; without a stored list, the run's fallback
    with why = "popular". (None, []) before the first run."""
    run = RecommendationRun.objects.order_by("-created_at").first()
    if run is None:
        return None, []
    stored = CustomerRecommendation.objects.filter(customer=customer).first()
    if stored is None:
        pairs = [(int(p), "popular") for p in run.fallback_product_ids]
    else:
        pairs = list(
            zip(
                (int(p) for p in stored.product_ids),
                (str(s) for s in stored.sources),
                strict=False,
            )
        )
    sold = Product.objects.filter(pk__in=[p for p, _ in pairs], active=True).in_bulk()
    return run, [(sold[p], why) for p, why in pairs if p in sold]
