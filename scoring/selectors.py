"""Reused reads of scores and models (campaigns read scores only through here)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import OuterRef, Subquery

from customers.models import Customer
from scoring.ml.tiers import DEFAULT_TIER_RULES, TierRule, by_severity
from scoring.models import ChurnModel, CustomerScore, ModelStatus, RiskTier, RunStatus, ScoringRun


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
        ScoringRun.objects.filter(status=RunStatus.COMPLETED)
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
            customer_id__in=ids[start : start + 5000], pk=Subquery(latest)
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
