"""Event-triggered rescoring (issue 14, docs/realtime.md): score ONE customer now, through the
scoring run's own feature path (`runs.range_score` over the range [id, id]), with the active
model and the same reasons, and store the score with its trigger.

The rescores of a day and model gather under one `events` run (ScoringRun.kind), each score
with its own `sequence`, so a customer can be rescored many times a day. A rescored customer's
tier is where the new probability would rank in the latest completed scheduled run (the run
whose tiers every other customer carries), not a rank among one customer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from customers.models import Customer
from scoring.errors import ScoringError
from scoring.ml.tiers import NOT_SCORABLE, assign_tiers_against
from scoring.models import ChurnModel, CustomerScore, RunKind, RunStatus, ScoringRun
from scoring.selectors import churn_model_active, risk_tier_rules, scoring_run_latest
from scoring.services.runs import not_scorable_reason, range_score
from scoring.services.training import churn_model_load

# Per worker process: the fitted estimator of the active model and the sorted probabilities
# of the latest scheduled run (a million floats, 8 MB), read once, not once per event.
_lock = threading.Lock()
_estimators: dict[tuple[int, str], Any] = {}
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


def _estimator(model: ChurnModel) -> Any:
    key = (model.pk, model.artifact_sha256)
    with _lock:
        if key not in _estimators:
            _estimators.clear()  # only the active model is kept
            _estimators[key] = churn_model_load(model=model)
        return _estimators[key]


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


def customer_rescore(*, customer_id: int, trigger: str, now: datetime | None = None) -> Rescore:
    """Score one customer as of now with the active model; store the score row (with its
    trigger) and copy it onto the customer, in one transaction. Raises ScoringError without
    an active model."""
    started = time.perf_counter()
    model = churn_model_active()
    if model is None:
        raise ScoringError("there is no active churn model: train one with manage.py churn_train")
    now = now or timezone.now()
    previous_tier = (
        Customer.objects.filter(pk=customer_id).values_list("risk_tier", flat=True).first() or ""
    )
    ranged = range_score(
        model=model,
        estimator=_estimator(model),
        first_id=customer_id,
        last_id=customer_id,
        as_of=now,
    )
    if ranged is None:  # the customer was erased or deleted meanwhile
        return Rescore(customer_id, trigger, None, None, "", previous_tier, 0.0)
    _index, scorable, scored = ranged
    is_scorable = bool(scorable[0])
    probability = float(scored.probability[0]) if is_scorable else None
    tier = NOT_SCORABLE
    if probability is not None:
        reference = _reference(scoring_run_latest())
        tier = str(
            assign_tiers_against(
                probabilities=[probability], reference=reference, rules=risk_tier_rules()
            )[0]
        )
    reasons = list(scored.reasons[0]) if is_scorable else []
    with transaction.atomic():
        run = events_run_for(model=model, now=now)
        score = CustomerScore.objects.create(
            run=run,
            customer_id=customer_id,
            probability=probability,
            tier=tier,
            scorable=is_scorable,
            not_scorable_reason="" if is_scorable else not_scorable_reason(model=model, as_of=now),
            reasons=reasons,
            scored_at=now,
            trigger=trigger[:64],
            sequence=int(now.timestamp() * 1_000_000),
        )
        Customer.objects.filter(pk=customer_id).update(
            churn_probability=probability,
            risk_tier=tier,
            scored_at=now,
            score_model_version=model.version,
        )
        ScoringRun.objects.filter(pk=run.pk).update(
            customers_scored=F("customers_scored") + 1,
            customers_not_scorable=F("customers_not_scorable") + (0 if is_scorable else 1),
            finished_at=now,
        )
    return Rescore(
        customer_id=customer_id,
        trigger=trigger,
        score_id=score.pk,
        probability=probability,
        tier=tier,
        previous_tier=previous_tier,
        seconds=round(time.perf_counter() - started, 4),
    )
