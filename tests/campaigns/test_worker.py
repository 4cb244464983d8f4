"""The relay in a real Celery worker through Redis, against PostgreSQL and a real SMTP server."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from campaigns.models import Intervention
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import RELAY_LEASE, SENDING_STALE_AFTER, interventions_relay
from campaigns.tasks import interventions_relay_task
from retention.celery import app as celery_app
from tests.campaigns.conftest import (
    make_campaign,
    make_customers,
    make_offer,
    make_template,
    point_email_at,
)
from tests.campaigns.servers import smtp_server
from tests.worker import celery_worker, smtp_worker_env

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_a_real_worker_relays_the_outbox_once_even_when_the_task_is_duplicated(
    require_postgres: None, require_redis: str
) -> None:
    from django.utils import timezone

    make_customers(40)
    rule: dict[str, Any] = {
        "name": "email",
        "tiers": ["critical"],
        "channel": "email",
        "offer": make_offer(),
        "template": make_template("email"),
    }
    campaign = make_campaign(rules=[rule], control_percentage=25)
    # Noon in the customers' zone (UTC) today: outside quiet hours, so everything is due now.
    now = timezone.now().replace(hour=12, minute=0)
    summary = campaign_dispatch(campaign=campaign, now=now)
    Intervention.objects.filter(status="pending").update(send_after=None)
    with (
        smtp_server() as (recorder, port),
        celery_worker(require_redis, extra_env=smtp_worker_env(port)) as queue,
    ):
        first = interventions_relay_task.apply_async(queue=queue)
        duplicate = interventions_relay_task.apply_async(queue=queue)
        results = [first.get(timeout=60), duplicate.get(timeout=60)]
    assert sum(r["sent"].get("email", 0) for r in results) == summary.pending
    assert len(recorder.messages) == summary.pending
    assert max(Counter(recorder.recipients()).values()) == 1
    assert Intervention.objects.filter(arm="treatment", status="sent").count() == summary.pending
    assert not set(recorder.recipients()) & set(
        Intervention.objects.filter(arm="control").values_list("customer__email", flat=True)
    )


def test_a_worker_killed_mid_delivery_loses_no_message_and_sends_none_twice(
    require_postgres: None, require_redis: str, settings: Any
) -> None:
    """SIGKILL the worker mid-chunk: the rest waits out the short lease, then goes exactly once;
    the one in flight is resolved as delivery_unknown minutes later (fake clock), never resent."""
    from django.utils import timezone

    make_customers(300)
    rule: dict[str, Any] = {
        "name": "email",
        "tiers": ["critical"],
        "channel": "email",
        "offer": make_offer(),
        "template": make_template("email"),
    }
    now = timezone.now().replace(hour=12, minute=0)
    campaign_dispatch(campaign=make_campaign(rules=[rule], control_percentage=0), now=now)
    Intervention.objects.filter(status="pending").update(send_after=None)
    with smtp_server() as (recorder, port):
        recorder.delay = 0.02
        with celery_worker(require_redis, extra_env=smtp_worker_env(port)) as queue:
            name = f"{queue}@{os.uname().nodename}"
            pid = celery_app.control.inspect(destination=[name], timeout=5).stats()[name]["pid"]
            interventions_relay_task.apply_async(queue=queue)
            deadline = time.monotonic() + 60
            while len(recorder.messages) < 100 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.kill(pid, signal.SIGKILL)
            killed_at = timezone.now()
        point_email_at(settings, port)
        delivered_by_the_dead = len(recorder.messages)
        assert 100 <= delivered_by_the_dead < 300
        # The dead worker's rows are held only for the lease, then a new relay sends them.
        assert interventions_relay(now=killed_at + RELAY_LEASE + timedelta(seconds=5)).sent
        interventions_relay(now=killed_at + SENDING_STALE_AFTER + timedelta(minutes=1))
    counts = Counter(recorder.recipients())
    assert max(counts.values()) == 1
    lost = Intervention.objects.filter(reason="delivery_unknown")
    assert lost.count() <= 1 and not Intervention.objects.filter(status="sending").exists()
    sent = Intervention.objects.filter(status="sent")
    assert sent.count() + lost.count() == 300
    assert set(sent.values_list("customer__email", flat=True)) <= set(counts)
