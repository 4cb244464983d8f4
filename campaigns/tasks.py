"""Celery entry points of campaigns: thin wrappers (ids and ISO dates in, one service call).

Both are safe to run twice — a cycle is guarded by its unique CampaignCycle row and a delivery
by the check-and-set of its status — so they acknowledge late and are rejected on worker loss.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from celery import current_app, shared_task
from django.conf import settings
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.services.dispatch import campaign_dispatch, campaigns_dispatch_due
from campaigns.services.relay import interventions_relay


def tasks_run_in_process() -> bool:
    """True without a broker (the embedded default: REDIS_URL empty makes Celery eager), where
    a queued task would run inline and the beat schedule never fires; callers that would
    otherwise wait for the schedule (the admin's "dispatch now") then do the work themselves."""
    return bool(current_app.conf.task_always_eager)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def campaigns_dispatch_due_task(now: str | None = None) -> list[dict[str, Any]]:
    """Beat, every 15 minutes: dispatch the campaigns whose cycle is due, then relay."""
    moment = datetime.fromisoformat(now) if now else timezone.now()
    summaries = campaigns_dispatch_due(now=moment)
    if any(s.pending for s in summaries):
        interventions_relay_task.delay()
    return [asdict(s) for s in summaries]


@shared_task(acks_late=True, reject_on_worker_lost=True)
def campaign_dispatch_task(campaign_id: int, now: str | None = None) -> dict[str, Any]:
    moment = datetime.fromisoformat(now) if now else timezone.now()
    summary = campaign_dispatch(campaign=Campaign.objects.get(pk=campaign_id), now=moment)
    interventions_relay_task.delay_on_commit()  # type: ignore[attr-defined]
    return asdict(summary)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def interventions_relay_task(
    channels: list[str] | None = None, customer_ids: list[int] | None = None
) -> dict[str, Any]:
    """Beat, every minute: deliver due outbox rows, at most the per-minute rate per channel.
    After a triggered entry: only the due rows of `customer_ids`."""
    summary = interventions_relay(
        channels=channels,
        max_per_channel=dict(settings.CAMPAIGN_RATE_PER_MINUTE),
        customer_ids=customer_ids,
    )
    return asdict(summary)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def uplift_reports_nightly_task(now: str | None = None) -> list[str]:
    """Beat, nightly: snapshot every campaign's (and open cycle's) uplift and the program report.
    Safe twice: one UpliftReport per scope and day (a unique constraint); a rerun updates it."""
    from campaigns.measurement.snapshots import uplift_reports_refresh

    moment = datetime.fromisoformat(now) if now else timezone.now()
    return [str(r) for r in uplift_reports_refresh(now=moment)]


@shared_task(acks_late=True, reject_on_worker_lost=True)
def uplift_report_task(campaign_id: int) -> str:
    """On demand (e.g. from an admin action with a broker): one campaign's snapshot."""
    from campaigns.measurement.snapshots import uplift_report_compute

    return str(uplift_report_compute(campaign=Campaign.objects.get(pk=campaign_id)))


@shared_task(acks_late=True, reject_on_worker_lost=True)
def uplift_model_train_task(campaign_id: int, now: str | None = None) -> dict[str, Any]:
    """On demand: train an uplift model on a campaign's finished interventions (safe twice: a
    second run registers another challenger, which the champion/challenger rule judges)."""
    from campaigns.services.uplift_models import uplift_model_train

    moment = datetime.fromisoformat(now) if now else timezone.now()
    result = uplift_model_train(campaign=Campaign.objects.get(pk=campaign_id), now=moment)
    return {
        "model": result.model.version if result.model else None,
        "message": result.message,
        "rows": result.rows,
    }
