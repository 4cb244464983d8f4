"""Event-triggered rescoring, the glue (docs/realtime.md): `customers` announces customers
whose recent events call for a rescore (customers.realtime.rescore_wanted, sent on commit);
this module debounces them and has them rescored in small batches by
`scoring.tasks.customers_rescore_task`; after the rescore, `customers_rescored` tells the apps
above (campaigns: triggered campaigns).

With a broker (REDIS_URL), in Redis:
- debounce: the first event of a customer sets `pending:<id>` (SET NX) and queues the
  customer; later events find the key and add nothing until a rescore task takes the customer
  (it deletes the key before it reads the customer's data, so a later event gets a rescore
  of its own);
- micro-batches: queued customers wait in one Redis list; one drain task is scheduled
  REALTIME_DEBOUNCE_MS after the first of them (SET NX of a flag) and rescores up to
  REALTIME_BATCH customers in one pass (one read, one feature pass, one predict: a model's
  per-call overhead is paid once per batch, not once per customer); when more are waiting it
  schedules the next drain at once, so several worker processes drain a backlog together.
Without a broker (the embedded default) the customers of a committed batch are rescored
in-process right away, one pass per batch.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from django.dispatch import Signal

# Sent after each stored batch of rescores: rescores (list of scoring.services.realtime.Rescore)
# and now (datetime).
customers_rescored = Signal()

# How long a queued customer merges further events, and a scheduled drain holds its flag, if
# no task takes them (a lost task or a long backlog): after that, the next event queues again.
PENDING_TTL_SECONDS = 60
QUEUE_KEY = "realtime:rescore-queue"
DRAIN_KEY = "realtime:rescore-drain-scheduled"


def pending_key(customer_id: int) -> str:
    return f"realtime:rescore-pending:{customer_id}"


@cache
def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def redis_client() -> Any | None:
    """The Redis of the broker, or None in the embedded default (tasks run in-process)."""
    from celery import current_app

    if current_app.conf.task_always_eager or not settings.REDIS_URL:
        return None
    return _redis(settings.REDIS_URL)


def rescore_schedule(*, customer_ids: list[int], triggers: dict[int, str]) -> list[int]:
    """Queue a debounced rescore of each customer not already queued; returns those queued."""
    from scoring.tasks import customers_rescore_task  # tasks import services; keep ready() light

    client = redis_client()
    if client is None:  # in-process: rescore this batch's customers now, in one pass
        wanted = {str(c): triggers.get(c, "") for c in customer_ids}
        customers_rescore_task.delay(wanted)
        return [int(c) for c in wanted]
    pipe = client.pipeline()
    for customer_id in customer_ids:
        pipe.set(pending_key(customer_id), "1", nx=True, ex=PENDING_TTL_SECONDS)
    added = [c for c, fresh in zip(customer_ids, pipe.execute(), strict=True) if fresh]
    if added:
        client.rpush(QUEUE_KEY, *[f"{c}:{triggers.get(c, '')}" for c in added])
        drain_schedule(client, countdown=settings.REALTIME_DEBOUNCE_MS / 1000)
    return added


def realtime_task_options() -> dict[str, Any]:
    """`apply_async` options of an event-triggered task (the rescore here, the triggered relay
    in campaigns): REALTIME_QUEUE when set, else the default queue."""
    return {"queue": settings.REALTIME_QUEUE} if settings.REALTIME_QUEUE else {}


def drain_schedule(client: Any, *, countdown: float) -> bool:
    """Schedule one drain task unless one is scheduled already."""
    from scoring.tasks import customers_rescore_task

    if client.set(DRAIN_KEY, "1", nx=True, ex=PENDING_TTL_SECONDS):
        customers_rescore_task.apply_async(countdown=countdown, **realtime_task_options())
        return True
    return False


def queue_take(client: Any) -> dict[int, str]:
    """Take up to REALTIME_BATCH queued customers (customer id → trigger) and clear their
    pending keys; a drain is scheduled at once for any still waiting."""
    client.delete(DRAIN_KEY)  # events from now on schedule a drain of their own
    raw = client.lpop(QUEUE_KEY, settings.REALTIME_BATCH) or []
    taken: dict[int, str] = {}
    for item in raw:
        customer, _, trigger = item.decode().partition(":")
        taken.setdefault(int(customer), trigger)
    if taken:
        client.delete(*[pending_key(c) for c in taken])
    if client.llen(QUEUE_KEY):
        drain_schedule(client, countdown=0)
    return taken


def _on_rescore_wanted(
    sender: Any, customer_ids: list[int], triggers: dict[int, str], **kwargs: Any
) -> None:
    rescore_schedule(customer_ids=customer_ids, triggers=triggers)


def connect() -> None:
    """Listen to the customers app's requests (called from ScoringConfig.ready())."""
    from customers.realtime import rescore_wanted

    rescore_wanted.connect(_on_rescore_wanted, dispatch_uid="scoring.realtime")
