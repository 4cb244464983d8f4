"""Event-triggered rescoring, the glue (docs/realtime.md): `customers` announces customers
whose recent events call for a rescore (customers.realtime.rescore_wanted, sent on commit);
this module debounces them and enqueues `scoring.tasks.customer_rescore_task`; after the
rescore, `customer_rescored` tells the apps above (campaigns: triggered campaigns).

Debounce: the first event of a customer sets a cache key (Redis with a broker: SET NX, atomic
across web processes) and enqueues one task with a countdown of REALTIME_DEBOUNCE_MS; later
events find the key and add nothing. The task deletes the key before it reads the customer,
so an event arriving after that read gets a rescore of its own. Without a broker (the embedded
default) the task runs in-process as soon as the batch commits; events of one batch still give
one rescore per customer.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.dispatch import Signal

# Sent after each stored rescore: rescore (scoring.services.realtime.Rescore), now (datetime).
customer_rescored = Signal()

# How long a pending rescore merges further events if its task has not started (a backlog).
PENDING_TTL_SECONDS = 60


def pending_key(customer_id: int) -> str:
    return f"realtime:rescore-pending:{customer_id}"


def rescore_schedule(*, customer_ids: list[int], triggers: dict[int, str]) -> list[int]:
    """Enqueue one debounced rescore per customer not already pending; returns those enqueued."""
    from scoring.tasks import customer_rescore_task  # tasks import services; keep ready() light

    countdown = settings.REALTIME_DEBOUNCE_MS / 1000
    enqueued = []
    for customer_id in customer_ids:
        trigger = triggers.get(customer_id, "")
        if cache.add(pending_key(customer_id), trigger, timeout=PENDING_TTL_SECONDS):
            customer_rescore_task.apply_async((customer_id, trigger), countdown=countdown)
            enqueued.append(customer_id)
    return enqueued


def _on_rescore_wanted(
    sender: Any, customer_ids: list[int], triggers: dict[int, str], **kwargs: Any
) -> None:
    rescore_schedule(customer_ids=customer_ids, triggers=triggers)


def connect() -> None:
    """Listen to the customers app's requests (called from ScoringConfig.ready())."""
    from customers.realtime import rescore_wanted

    rescore_wanted.connect(_on_rescore_wanted, dispatch_uid="scoring.realtime")
