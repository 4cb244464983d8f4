"""A behaviour-label model cannot score customers who never ordered: they are marked "not
scorable" with the reason, get no probability, and stay out of the tiers and of the drift."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from customers.models import Customer, Order
from scoring.ml.tiers import NOT_SCORABLE, assign_ranked_tiers
from scoring.models import CustomerScore
from scoring.reports import format_run
from scoring.selectors import risk_tier_rules
from scoring.services.datasets import training_data_from_database
from scoring.services.runs import parse_as_of, scoring_run_execute
from scoring.services.training import churn_model_train

pytestmark = pytest.mark.django_db
START = datetime(2023, 6, 1, tzinfo=UTC)


def shoppers_and_strangers(*, shoppers: int = 240, strangers: int = 60, seed: int = 0) -> None:
    """`shoppers` customers ordering every few weeks (40% stop at some point in 2024) and
    `strangers` customers without a single order (e.g. imported from a telco file)."""
    rng = np.random.default_rng(seed)
    customers = Customer.objects.bulk_create(
        [Customer(external_id=f"s{i:04d}") for i in range(shoppers)]
        + [Customer(external_id=f"x{i:04d}") for i in range(strangers)]
    )
    orders = []
    for i, customer in enumerate(customers[:shoppers]):
        stops = rng.random() < 0.4
        end = START + timedelta(days=int(rng.integers(280, 460)) if stops else 580)
        gap = float(rng.uniform(10, 40))
        when = START + timedelta(days=float(rng.uniform(0, 30)))
        k = 0
        while when < end:
            orders.append(
                Order(
                    external_id=f"o{i}-{k}",
                    customer=customer,
                    placed_at=when,
                    amount=Decimal(int(rng.integers(10, 90))),
                )
            )
            when += timedelta(days=gap * float(rng.uniform(0.5, 1.5)))
            k += 1
    Order.objects.bulk_create(orders, batch_size=5000)


@pytest.fixture
def behaviour_model(artifact_dir: Path) -> None:
    shoppers_and_strangers()
    data = training_data_from_database(as_of=parse_as_of("2024-07-01"), horizon_days=90)
    churn_model_train(data=data, candidates=["lr_balanced"], n_splits=3)


def test_customers_without_an_order_are_not_scorable_and_stay_out_of_the_tiers(
    behaviour_model: None, settings: Any
) -> None:
    settings.SCORING_CHUNK_CUSTOMERS = 50  # the last chunks hold nobody the model can score
    run = scoring_run_execute(as_of=parse_as_of("2024-10-01"), run_key="nightly")
    assert run is not None
    assert (run.customers_scored, run.customers_not_scorable) == (300, 60)
    strangers = CustomerScore.objects.filter(run=run, customer__external_id__startswith="x")
    assert {(s.scorable, s.probability, s.tier) for s in strangers} == {(False, None, NOT_SCORABLE)}
    assert "no completed order before 2024-10-01" in strangers[0].not_scorable_reason
    # The customers' columns campaigns select on: no probability, no risk tier to match.
    assert Customer.objects.filter(churn_probability__isnull=True).count() == 60
    assert set(
        Customer.objects.filter(external_id__startswith="x").values_list("risk_tier", flat=True)
    ) == {NOT_SCORABLE}
    # The tiers rank the 240 scorable customers only (the top 5% = 12 critical, unless tied).
    scored = CustomerScore.objects.filter(run=run, scorable=True).order_by("pk")
    probabilities = list(scored.values_list("probability", flat=True))
    expected = assign_ranked_tiers(probabilities=probabilities, rules=risk_tier_rules())
    assert list(scored.values_list("tier", flat=True)) == expected.tolist()
    assert sum(run.tier_counts.values()) == 240 and NOT_SCORABLE not in run.tier_counts
    # Drift compares scorable customers only, with the population the model learned from.
    assert run.drift["n_rows"] == 240 and run.chunks_done == 6
    assert "not scorable 60" in format_run(run)
