"""Event-triggered rescoring (issue 14, docs/realtime.md): score ONE customer now, through the
scoring run's own feature path (`runs.range_score` over the range [id, id]), with the active
model and the same reasons, and store the score with its trigger.

The rescores of a day and model gather under one `events` run (ScoringRun.kind), each score
with its own `sequence`, so a customer can be rescored many times a day. A rescored customer's
tier is where the new probability would rank in the latest completed scheduled run (the run
whose tiers every other customer carries), not a rank among one customer.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from customers.models import Customer
from scoring.errors import ScoringError
from scoring.ml.tiers import NOT_SCORABLE, assign_tiers_against
from scoring.models import ChurnModel, CustomerScore, RunKind, RunStatus, ScoringRun
from scoring.selectors import churn_model_active, risk_tier_rules, scoring_run_latest
from scoring.services.runs import (
    model_student,
    not_scorable_reason,
    range_score,
    student_leaves,
)
from scoring.services.training import churn_model_estimator

# Per worker process: the fitted estimator of the active model and the sorted probabilities
# of the latest scheduled run (a million floats, 8 MB), read once, not once per event.
_lock = threading.Lock()
_references: dict[int, np.ndarray] = {}


@dataclass(frozen=True)
class Rescore:
    """What one event-triggered rescore stored (None fields: the customer was not scored)."""

    customer_id: int
    trigger: str
    score_id: int | None
    probability: float | None
    tier: str
    previous_tier: str
    seconds: float


def _reference(run: ScoringRun | None) -> np.ndarray:
    """The latest scheduled run's scorable probabilities, ascending (empty without a run)."""
    if run is None:
        return np.empty(0)
    with _lock:
        if run.pk not in _references:
            values = CustomerScore.objects.filter(
                run=run, scorable=True, probability__isnull=False, sequence=0
            ).values_list("probability", flat=True)
            _references.clear()
            _references[run.pk] = np.sort(np.fromiter(values, dtype=np.float64))
        return _references[run.pk]


def events_run_for(*, model: ChurnModel, now: datetime) -> ScoringRun:
    """The day's `events` run of `model` (created on the first rescore of the day)."""
    key = f"events-{now:%Y-%m-%d}-{model.version}"[:100]
    run = ScoringRun.objects.filter(run_key=key).select_related("model").first()
    if run is not None:
        return run
    try:
        with transaction.atomic():
            return ScoringRun.objects.create(
                run_key=key,
                model=model,
                as_of=now,
                kind=RunKind.EVENTS,
                status=RunStatus.COMPLETED,
                finished_at=now,
            )
    except IntegrityError:  # another worker created it first
        return ScoringRun.objects.select_related("model").get(run_key=key)


def customers_rescore(*, triggers: dict[int, str], now: datetime | None = None) -> list[Rescore]:
    """Score the customers of `triggers` (customer id → what triggered it) as of now with the
    active model, together (one read, one feature pass, one predict, one explanation); store
    one score row each (with its trigger) and copy it onto the customers, in one transaction.
    Raises ScoringError without an active model. Customers no longer there are left out."""
    started = time.perf_counter()
    model = churn_model_active()
    if model is None:
        raise ScoringError("there is no active churn model: train one with manage.py churn_train")
    now = now or timezone.now()
    ids = sorted(int(i) for i in triggers)
    if not ids:
        return []
    previous = dict(Customer.objects.filter(pk__in=ids).values_list("pk", "risk_tier"))
    # Every rescored customer is explained (a few at a time: the cost is nothing), whatever
    # tier the rescore puts them in.
    ranged = range_score(
        model=model,
        estimator=churn_model_estimator(model=model),
        ids=ids,
        as_of=now,
        reasons_from=0.0,
    )
    if ranged is None:  # erased or deleted meanwhile
        return []
    features, scorable, scored = ranged.features, ranged.scorable, ranged.scored
    index = features.index
    leaves = student_leaves(
        student=model_student(model=model), features=features, scorable=scorable
    )
    probability = np.full(len(index), np.nan)
    probability[scorable] = scored.probability.astype(float)
    tier = np.full(len(index), NOT_SCORABLE, dtype=object)
    if scorable.any():
        tier[scorable] = assign_tiers_against(
            probabilities=probability[scorable],
            reference=_reference(scoring_run_latest()),
            rules=risk_tier_rules(),
        )
    reasons: list[list[str]] = [[] for _ in range(len(index))]
    for position, row_reasons in zip(np.flatnonzero(scorable), scored.reasons, strict=True):
        reasons[position] = list(row_reasons)
    # The waterfall, as a nightly chunk stores it (the customer page reads the latest score).
    attributions: list[dict[str, Any]] = [{} for _ in range(len(index))]
    waterfalls = scored.explanations.attributions_json()
    for position, text in zip(np.flatnonzero(scorable), waterfalls, strict=True):
        attributions[position] = json.loads(text)
    sequence = int(now.timestamp() * 1_000_000)
    unscorable = not_scorable_reason(model=model, as_of=now)
    with transaction.atomic():
        run = events_run_for(model=model, now=now)
        rows = CustomerScore.objects.bulk_create(
            [
                CustomerScore(
                    run=run,
                    customer_id=int(customer_id),
                    probability=None if np.isnan(probability[i]) else float(probability[i]),
                    tier=str(tier[i]),
                    scorable=bool(scorable[i]),
                    not_scorable_reason="" if scorable[i] else unscorable,
                    reasons=reasons[i],
                    attributions=attributions[i],
                    scored_at=now,
                    trigger=triggers.get(int(customer_id), "")[:64],
                    sequence=sequence,
                    student_leaf=None if pd.isna(leaves.iloc[i]) else int(leaves.iloc[i]),
                )
                for i, customer_id in enumerate(index)
            ]
        )
        _customers_take(score_ids=[r.pk for r in rows], version=model.version)
        ScoringRun.objects.filter(pk=run.pk).update(
            customers_scored=F("customers_scored") + len(rows),
            customers_not_scorable=F("customers_not_scorable") + int((~scorable).sum()),
            finished_at=now,
        )
    seconds = round(time.perf_counter() - started, 4)
    return [
        Rescore(
            customer_id=row.customer_id,
            trigger=row.trigger,
            score_id=row.pk,
            probability=row.probability,
            tier=row.tier,
            previous_tier=previous.get(row.customer_id, ""),
            seconds=seconds,
        )
        for row in rows
    ]


def _customers_take(*, score_ids: list[int], version: str) -> None:
    """Copy the new scores onto their customers' latest-score columns in one UPDATE."""
    if not score_ids:
        return
    quote = connection.ops.quote_name
    customers, scores = quote(Customer._meta.db_table), quote(CustomerScore._meta.db_table)
    marks = ", ".join(["%s"] * len(score_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {customers} SET churn_probability = s.probability, risk_tier = s.tier, "
            "scored_at = s.scored_at, score_model_version = %s, "
            "score_student_leaf = s.student_leaf "
            f"FROM {scores} s WHERE s.id IN ({marks}) AND {customers}.id = s.customer_id",
            [version, *score_ids],
        )


def customer_rescore(*, customer_id: int, trigger: str, now: datetime | None = None) -> Rescore:
    """`customers_rescore` of one customer (an empty Rescore when they are gone)."""
    done = customers_rescore(triggers={customer_id: trigger}, now=now)
    return done[0] if done else Rescore(customer_id, trigger, None, None, "", "", 0.0)
