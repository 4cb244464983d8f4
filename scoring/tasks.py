"""Celery entry points of the churn engine: nightly scoring fanned out in chunks, retraining.

Each task takes JSON-safe arguments and calls one service; chunk writes are idempotent.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from celery import chord, shared_task
from celery.signals import worker_process_init
from django.conf import settings
from django.db import connections
from django.utils import timezone

from scoring.errors import ScoringError
from scoring.models import ScoringRun
from scoring.realtime import customers_rescored, queue_take, redis_client
from scoring.services.datasets import training_data_from_database
from scoring.services.realtime import customers_rescore
from scoring.services.runs import (
    default_as_of,
    parse_as_of,
    scoring_chunk_score,
    scoring_run_create,
    scoring_run_finish,
    scoring_warm_up,
)
from scoring.services.training import churn_model_train

logger = logging.getLogger(__name__)


@worker_process_init.connect
def _warm_up_scoring(**kwargs: Any) -> None:
    """A worker process, as it starts, scores a few customers on a thread of its own (nothing
    written; `scoring_warm_up`): its first chunk or event rescore then finds the model loaded
    and checked. A thread, so the process is ready at once (Celery gives an initialising
    process 4 s); its failure only costs the warm-up."""
    customers = int(getattr(settings, "SCORING_WORKER_WARM_UP_CUSTOMERS", 0))
    if customers <= 0:
        return

    def warm() -> None:
        try:
            scored = scoring_warm_up(customers=customers)
            logger.info("scoring warm-up: %d customers scored, nothing written", scored)
        except Exception:  # no table yet, a database away: the first task pays instead
            logger.warning("scoring warm-up failed", exc_info=True)
        finally:
            connections.close_all()  # this thread's connection

    threading.Thread(target=warm, name="scoring-warm-up", daemon=True).start()


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=(OSError,), max_retries=3)
def scoring_chunk_task(run_id: int, first_id: int, last_id: int) -> int:
    """Score one chunk; a redelivered or retried chunk writes nothing twice."""
    run = ScoringRun.objects.select_related("model").get(pk=run_id)
    return scoring_chunk_score(run=run, first_id=first_id, last_id=last_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def scoring_finish_task(_written: list[int], run_id: int) -> dict[str, Any]:
    run = scoring_run_finish(run=ScoringRun.objects.get(pk=run_id))
    return {"run": run.run_key, "scored": run.customers_scored, "tiers": run.tier_counts}


@shared_task
def scoring_run_task(as_of: str | None = None, run_key: str | None = None) -> dict[str, Any]:
    """Start a scoring run: one chunk task per id range, then a finish task (a chord)."""
    when = parse_as_of(as_of)
    created = scoring_run_create(as_of=when, run_key=run_key)
    if created is None:
        return {"run": run_key, "skipped": "already ran"}
    run, chunks = created
    header = [scoring_chunk_task.si(run.pk, first, last) for first, last in chunks]
    if not header:
        scoring_run_finish(run=run)
        return {"run": run.run_key, "chunks": 0}
    chord(header)(scoring_finish_task.s(run.pk))
    return {"run": run.run_key, "chunks": len(chunks)}


@shared_task
def nightly_scoring_task() -> dict[str, Any]:
    """Beat: score everyone as of midnight UTC; the run key makes a second beat a no-op."""
    as_of = default_as_of()
    return scoring_run_task(as_of=as_of.isoformat(), run_key=f"nightly-{as_of:%Y-%m-%d}")


@shared_task
def weekly_retraining_task(horizon_days: int = 90, label_attribute: str = "") -> dict[str, Any]:
    """Beat: retrain at the latest cutoff whose label window is fully observed; the challenger
    replaces the champion only if it is at least as good on the same validation data."""
    if label_attribute:
        data = training_data_from_database(label_attribute=label_attribute)
    else:
        as_of = default_as_of() - timedelta(days=horizon_days)
        data = training_data_from_database(as_of=as_of, horizon_days=horizon_days)
    outcome = churn_model_train(data=data)
    return {
        "version": outcome.model.version,
        "activated": outcome.activated,
        "at": str(timezone.now()),
    }


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=(OSError,), max_retries=3)
def customers_rescore_task(triggers: dict[str, str] | None = None) -> dict[str, Any]:
    """Rescore customers after events, then tell the apps above (triggered campaigns).

    With a broker, called without arguments: it takes a batch of queued customers from Redis
    (scoring/realtime.py); in-process, it gets the batch (customer id → trigger). A batch taken
    by a worker that dies before it commits is not retried (it left the Redis queue): those
    customers wait for their next event or the nightly run (docs/realtime.md)."""
    client = redis_client()
    wanted = {int(k): v for k, v in (triggers or {}).items()}
    if client is not None:
        wanted.update(queue_take(client))
    if not wanted:
        return {"rescored": 0}
    now = timezone.now()
    try:
        rescores = customers_rescore(triggers=wanted, now=now)
    except ScoringError as exc:  # no active model yet: nothing to rescore with, not a failure
        logger.warning("rescore of %s customers skipped: %s", len(wanted), exc)
        return {"rescored": 0, "skipped": str(exc)}
    if rescores:
        customers_rescored.send(sender=ScoringRun, rescores=rescores, now=now)
    return {"rescored": len(rescores), "seconds": rescores[0].seconds if rescores else 0.0}
