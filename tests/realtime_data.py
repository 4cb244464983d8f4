"""A population whose churn rises with complaints, a model trained on it and a scheduled run:
what the event-triggered rescoring tests (tests/*/test_realtime*.py, test_triggered*.py) and
bench/realtime.py need. Written through the ORM in bulk; the model is trained and the run
scored by the real services."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.utils import timezone

from customers.models import Customer, Event
from scoring.models import ChurnModel, ScoringRun
from scoring.services.datasets import training_data_from_database
from scoring.services.runs import scoring_run_execute
from scoring.services.training import churn_model_train


def complaint_population(*, n: int = 400, seed: int = 0, now: datetime | None = None) -> None:
    """`n` customers (external ids r00000…) with email; each has a few complaints in the last
    60 days, and the more complaints the likelier their `Churn` attribute is Yes."""
    now = now or timezone.now()
    rng = np.random.default_rng(seed)
    complaints = rng.poisson(1.2, size=n)
    churn = rng.random(n) < 1 / (1 + np.exp(-(1.6 * complaints - 2.5)))
    Customer.objects.bulk_create(
        [
            Customer(
                external_id=f"r{i:05d}",
                name=f"Realtime {i}",
                email=f"r{i}@example.com",
                time_zone="UTC",
                attributes={"Churn": "Yes" if churn[i] else "No"},
            )
            for i in range(n)
        ]
    )
    pks = dict(Customer.objects.values_list("external_id", "pk"))
    events = []
    for i in range(n):
        for j in range(int(complaints[i])):
            days = float(rng.uniform(1, 60))
            events.append(
                Event(
                    external_id=f"seed-{i}-{j}",
                    customer_id=pks[f"r{i:05d}"],
                    kind="complaint",
                    occurred_at=now - timedelta(days=days),
                )
            )
    Event.objects.bulk_create(events)


# The registry row of the model trained on complaint_population (same seed, same data): tests
# after the first register it again instead of training it again (its artifact file stays).
_TRAINED: dict[str, Any] = {}


def complaint_model_and_run(*, now: datetime | None = None) -> ScoringRun:
    """Train (logistic regression on the Churn attribute) and score everyone as of `now`."""
    now = now or timezone.now()
    if _TRAINED and Path(_TRAINED["artifact_path"]).exists():
        ChurnModel.objects.create(**_TRAINED)
    else:
        data = training_data_from_database(label_attribute="Churn", as_of=now)
        model = churn_model_train(data=data, candidates=["lr_balanced"], n_splits=3).model
        _TRAINED.update({f.attname: getattr(model, f.attname) for f in model._meta.concrete_fields})
        _TRAINED.pop("id")
    run = scoring_run_execute(as_of=now, run_key=f"nightly-test-{now:%H%M%S%f}")
    assert run is not None
    return run


def just_below(*, tier: str) -> Customer:
    """The most at-risk customer not in `tier` (ranked just below its cutoff)."""
    customer = (
        Customer.objects.exclude(risk_tier=tier)
        .exclude(risk_tier="")
        .order_by("-churn_probability", "pk")
        .first()
    )
    assert customer is not None
    return customer
