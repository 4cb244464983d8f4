"""Triggered campaigns, the glue: after each event-triggered rescore (scoring.realtime's
`customers_rescored`, sent by scoring.tasks.customer_rescore_task) every active triggered
campaign decides for that customer (campaigns.services.triggered), and a new treatment entry
is delivered at once by the outbox relay (a task of its own with a broker; in-process without
one). Connected in CampaignsConfig.ready()."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from campaigns.models import InterventionStatus
from scoring.realtime import realtime_task_options


def _on_customers_rescored(sender: Any, rescores: list[Any], now: datetime, **kwargs: Any) -> None:
    from campaigns.services.triggered import campaigns_trigger
    from campaigns.tasks import interventions_relay_task

    entries = campaigns_trigger(customer_ids=[r.customer_id for r in rescores], now=now)
    entered = sorted(
        {
            e.customer_id
            for e in entries
            if e.outcome == "entered" and e.status == InterventionStatus.PENDING
        }
    )
    if entered:  # only these customers' messages: a nightly backlog is not this task's to send
        interventions_relay_task.apply_async(
            kwargs={"customer_ids": entered}, **realtime_task_options()
        )


def connect() -> None:
    from scoring.realtime import customers_rescored

    customers_rescored.connect(_on_customers_rescored, dispatch_uid="campaigns.realtime")
