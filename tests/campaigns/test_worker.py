"""The relay in a real Celery worker through Redis, against PostgreSQL and a real SMTP server."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from campaigns.models import Intervention
from campaigns.services.dispatch import campaign_dispatch
from campaigns.tasks import interventions_relay_task
from tests.campaigns.conftest import make_campaign, make_customers, make_offer, make_template
from tests.campaigns.servers import smtp_server
from tests.worker import celery_worker

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
    with smtp_server() as (recorder, port):
        env = {
            "EMAIL_BACKEND": "smtp",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(port),
            "CAMPAIGN_QUIET_HOURS": "0-0",
        }
        with celery_worker(require_redis, extra_env=env) as queue:
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
