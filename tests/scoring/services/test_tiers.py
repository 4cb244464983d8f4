"""Re-tiering a stored run: set-based, no new scoring run, counts a person can check."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from customers.models import Customer
from scoring.errors import ScoringError
from scoring.ml.tiers import NOT_SCORABLE, assign_ranked_tiers
from scoring.models import ChurnModel, CustomerScore, RiskTier, RunStatus, ScoringRun, TierMode
from scoring.selectors import risk_tier_rules
from scoring.services.tiers import tiers_reassign

pytestmark = pytest.mark.django_db
WHEN = datetime(2026, 11, 1, tzinfo=UTC)


def stored_run(probabilities: list[float | None], *, tier: str = "low") -> ScoringRun:
    """A completed run whose scores (and the customers' latest-score columns) hold
    `probabilities` (None = not scorable), every scorable one in `tier`."""
    model = ChurnModel.objects.create(
        version="m-test", threshold=0.5, artifact_path="x", artifact_sha256="0" * 64
    )
    run = ScoringRun.objects.create(
        run_key="nightly", model=model, as_of=WHEN, status=RunStatus.COMPLETED, finished_at=WHEN
    )
    customers = Customer.objects.bulk_create(
        [
            Customer(
                external_id=f"c{i:04d}",
                churn_probability=p,
                risk_tier=tier if p is not None else NOT_SCORABLE,
                scored_at=WHEN,
            )
            for i, p in enumerate(probabilities)
        ]
    )
    CustomerScore.objects.bulk_create(
        [
            CustomerScore(
                run=run,
                customer=c,
                probability=p,
                tier=tier if p is not None else NOT_SCORABLE,
                scorable=p is not None,
                not_scorable_reason="" if p is not None else "no order",
                scored_at=WHEN,
            )
            for c, p in zip(customers, probabilities, strict=True)
        ]
    )
    return run


def tier_sizes(run: ScoringRun) -> dict[str, int]:
    tiers = CustomerScore.objects.filter(run=run).values_list("tier", flat=True)
    return {name: list(tiers).count(name) for name in set(tiers)}


def test_retiering_moves_customers_between_tiers_without_a_new_scoring_run() -> None:
    # 200 scorable customers with distinct probabilities 0.005 … 1.0, and 7 not scorable.
    probabilities: list[float | None] = [(i + 1) / 200 for i in range(200)]
    run = stored_run([*probabilities, *([None] * 7)])

    first = tiers_reassign()  # the default tiers: critical 5%, high 10%, medium 20%, the rest
    # By hand: 5% of 200 = 10 critical, 10% = 20 high, 20% = 40 medium, 130 low.
    assert first.counts == {"critical": 10, "high": 20, "medium": 40, "low": 130}
    assert first.moved == {("low", "critical"): 10, ("low", "high"): 20, ("low", "medium"): 40}
    assert tier_sizes(run) == {
        "critical": 10,
        "high": 20,
        "medium": 40,
        "low": 130,
        NOT_SCORABLE: 7,
    }
    top = CustomerScore.objects.filter(run=run, tier="critical")
    assert min(top.values_list("probability", flat=True)) == pytest.approx(191 / 200)

    # Staff widen critical to 10% and make "high" a band from 70%.
    RiskTier.objects.filter(name="critical").update(share=0.10)
    RiskTier.objects.filter(name="high").update(mode=TierMode.BAND, min_probability=0.7)
    second = tiers_reassign()
    # By hand (customer k has p = k/200): critical = the top 10% = k 181–200; high = p ≥ 70%
    # among the rest = k 140–180 (41); medium = the top 10% + 20% = k 141–200, all taken
    # already (0); low = k 1–139. Before: critical k 191–200, high 171–190, medium 131–170.
    assert second.counts == {"critical": 20, "high": 41, "medium": 0, "low": 139}
    assert second.moved == {
        ("high", "critical"): 10,  # k 181–190
        ("medium", "high"): 31,  # k 140–170
        ("medium", "low"): 9,  # k 131–139
    }
    assert second.total_moved == 50
    assert "50 customers moved" in second.describe()
    # The customers carry the new tiers; the not scorable keep theirs; no run was added.
    assert Customer.objects.filter(risk_tier="critical").count() == 20
    assert Customer.objects.filter(risk_tier=NOT_SCORABLE).count() == 7
    assert ScoringRun.objects.count() == 1
    run.refresh_from_db()
    assert run.tier_counts == second.counts
    assert tiers_reassign().moved == {}  # nothing changed: nobody moves


def test_the_database_ranks_like_numpy_with_ties() -> None:
    rng = np.random.default_rng(4)
    # Calibrated (isotonic) scores are steps: many customers share a probability.
    probabilities = rng.choice([0.2, 0.35, 0.5, 0.61, 0.8, 0.93], size=500).tolist()
    run = stored_run(probabilities)
    tiers_reassign()
    in_db = dict(CustomerScore.objects.filter(run=run).values_list("probability", "tier"))
    expected = assign_ranked_tiers(probabilities=probabilities, rules=risk_tier_rules())
    assert {p: t for p, t in zip(probabilities, expected, strict=True)} == in_db
    # Ties never split: one tier per distinct probability.
    assert len(in_db) == len(set(probabilities))


def test_retiering_without_a_completed_run_says_so() -> None:
    with pytest.raises(ScoringError, match="no completed scoring run"):
        tiers_reassign()


def test_only_changed_tiers_are_written_and_a_customer_rescored_since_keeps_theirs() -> None:
    """The customers follow only the scores whose tier changed (every writer of a score's tier
    writes its customer's too), and a customer rescored after the run (an event) keeps the
    newer score's tier."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    probabilities: list[float | None] = [(i + 1) / 100 for i in range(100)]
    run = stored_run(probabilities)
    later = Customer.objects.get(external_id="c0099")  # p = 1.0: critical after re-tiering
    Customer.objects.filter(pk=later.pk).update(risk_tier="medium", scored_at=WHEN.replace(day=2))
    first = tiers_reassign(run=run)
    assert first.counts == {"critical": 5, "high": 10, "medium": 20, "low": 65}
    assert Customer.objects.get(pk=later.pk).risk_tier == "medium"  # its newer score's
    assert Customer.objects.filter(risk_tier="critical").count() == 4
    with CaptureQueriesContext(connection) as queries:
        assert tiers_reassign(run=run).moved == {}
    writes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert all("scoring_scoringrun" in sql for sql in writes)  # the counts, no tier


def test_a_run_with_no_scorable_customer_re_tiers_to_nobody() -> None:
    run = stored_run([None, None])
    result = tiers_reassign(run=run)
    assert result.moved == {} and set(result.counts.values()) == {0}
    assert tier_sizes(run) == {NOT_SCORABLE: 2}


def test_a_run_holding_a_tier_name_no_longer_configured_is_re_tiered_and_named() -> None:
    """Tiers are read as numbers of the configured names; a name that is no longer one (a tier
    renamed since the run) is looked up, re-tiered and named in the moves."""
    run = stored_run([(i + 1) / 100 for i in range(100)], tier="urgent")
    moved = tiers_reassign()
    assert moved.counts == {"critical": 5, "high": 10, "medium": 20, "low": 65}
    assert moved.moved == {
        ("urgent", "critical"): 5,
        ("urgent", "high"): 10,
        ("urgent", "medium"): 20,
        ("urgent", "low"): 65,
    }
    assert not CustomerScore.objects.filter(run=run, tier="urgent").exists()
    assert not Customer.objects.filter(risk_tier="urgent").exists()
