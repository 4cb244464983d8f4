"""The Celery application, configured from Django settings (keys prefixed CELERY_).

With no REDIS_URL, tasks run eagerly in-process: the same task code path as production.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import after_setup_logger, after_setup_task_logger, task_postrun, task_prerun

from common.logmask import handlers_mask

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retention.settings")


def _closed_redis_channel_is_a_connection_error() -> None:
    """Keep a worker alive when Redis goes away with a task in flight (issue 12).

    kombu 5.7.0 (the newest release; celery/kombu#582 is the same crash in 3.x): after the broker
    connection drops, the consumer closes its channel; the close restores the unacknowledged
    messages through a new Redis pool built from the transport's client — already None — so it
    raises AttributeError("'NoneType' object has no attribute 'hostname'"). Celery only ignores
    connection errors there, so the worker exits ("Unrecoverable error"). Raising the
    ConnectionError it really is lets Celery reconnect as for any broker loss. Restoring those
    messages is impossible anyway (the broker is down); they are redelivered by Redis after the
    visibility timeout if it kept its data, and their work is in PostgreSQL if it did not.
    Remove this when kombu builds no pool from a closed transport. The supervisor
    (docs/operations.md) remains the backstop for any other crash."""
    import redis
    from kombu.transport import redis as kombu_redis

    channel: Any = kombu_redis.Channel
    original = channel._connparams
    if getattr(original, "closed_transport_guard", False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.exceptions.ConnectionError("the broker connection is closed")
        return dict(original(self, asynchronous=asynchronous))

    _connparams.closed_transport_guard = True  # type: ignore[attr-defined]
    channel._connparams = _connparams


_closed_redis_channel_is_a_connection_error()

app = Celery("retention")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(task: Any = None, **kwargs: Any) -> None:
    """A worker's database connections outlive its tasks (CELERY_DB_REUSE_MAX): at each task's
    start and end, close those past CONN_MAX_AGE or broken, as Django does around a request.
    Never in an eager task: it runs in the caller's process, perhaps in its transaction."""
    request = getattr(task, "request", None)
    if request is None or getattr(request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


# A worker replaces root's handlers with its own (worker_hijack_root_logger), which would drop
# the mask of settings.LOGGING: its handlers (and the task logger's) get the mask too.
@after_setup_logger.connect
@after_setup_task_logger.connect
def _mask_worker_logs(logger: logging.Logger, **kwargs: Any) -> None:
    handlers_mask(logger)


app.conf.beat_schedule = {}

# --- The nightly cycle --- (one run: scoring → dispatch → relay → uplift, retention/cycle.py)
app.conf.beat_schedule["retention-cycle-nightly"] = {
    "task": "retention.tasks.cycle_nightly_task",
    # 02:00 UTC, after the day's orders are in. A cycle still running refuses the start (its
    # database lock); the scoring run key per date makes a rerun of the day resume, not redo.
    "schedule": crontab(hour=2, minute=0),
}
app.conf.beat_schedule["scoring-weekly-retraining"] = {
    "task": "scoring.tasks.weekly_retraining_task",
    "schedule": crontab(day_of_week="sun", hour=3, minute=0),
    "kwargs": {
        "horizon_days": int(os.environ.get("RETRAIN_HORIZON_DAYS", "90")),
        "label_attribute": os.environ.get("RETRAIN_LABEL_ATTRIBUTE", ""),
    },
}

# --- Campaigns --- (both tasks are idempotent; see campaigns/tasks.py)
# Campaigns whose cadence is shorter than a day are dispatched between cycles: on the quarter
# hour, aligned with cycle boundaries (cadences are multiples of 15 min). A campaign the
# nightly cycle dispatched is skipped here (its CampaignCycle row exists).
app.conf.beat_schedule["campaigns-dispatch-due"] = {
    "task": "campaigns.tasks.campaigns_dispatch_due_task",
    "schedule": crontab(minute="*/15"),
}
app.conf.beat_schedule["campaigns-relay"] = {
    "task": "campaigns.tasks.interventions_relay_task",
    "schedule": 60.0,  # CAMPAIGN_RATE_* are per minute: one relay run per minute
}
