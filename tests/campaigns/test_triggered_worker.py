"""Event → score row → triggered email, end to end with a real Redis broker, a real Celery
worker, PostgreSQL and a local SMTP server; and the debounce across separate API requests."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from campaigns.models import Intervention
from retention.celery import app
from scoring.models import CustomerScore, RunKind
from tests.campaigns.test_triggered import triggered_campaign
from tests.realtime_data import complaint_model_and_run, complaint_population, just_below
from tests.worker import email_worker

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("own_queue", [False, True], ids=["default-queue", "REALTIME_QUEUE"])
def test_complaints_posted_through_the_api_give_one_rescore_and_one_email_via_a_worker(
    require_postgres: None,
    require_redis: str,
    settings: Any,
    tmp_path: Path,
    api: Any,
    own_queue: bool,
) -> None:
    """With REALTIME_QUEUE set, the rescore goes to that queue even when the default queue has
    no worker (as when every default-queue worker is busy with a nightly cycle's chunks)."""
    settings.MODEL_ARTIFACT_DIR = tmp_path / "models"
    settings.REALTIME_DEBOUNCE_MS = 2000  # the five requests below arrive well within it
    complaint_population(n=300)
    complaint_model_and_run()
    campaign = triggered_campaign()
    customer = just_below(tier="critical")
    with email_worker(require_redis) as recorder:
        if own_queue:
            settings.REALTIME_QUEUE = app.conf.task_default_queue  # the worker's
            app.conf.task_default_queue = "nobody-listens-here"  # email_worker restores it
        for i in range(5):  # five requests, one complaint each
            event = {
                "external_id": f"w-complaint-{i}",
                "customer": customer.external_id,
                "kind": "complaint",
                "occurred_at": (timezone.now() - timedelta(seconds=1)).isoformat(),
            }
            response = api.post("/api/v1/events/bulk", [event], format="json")
            assert response.status_code == 200, response.content
        rescored = CustomerScore.objects.filter(customer=customer, run__kind=RunKind.EVENTS)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not recorder.messages:
            time.sleep(0.2)
        time.sleep(3)  # room for a second rescore or message, were there one
    [score] = rescored
    assert score.trigger == "complaint" and score.tier == "critical"
    assert recorder.recipients() == [customer.email]
    [entry] = Intervention.objects.filter(campaign=campaign)
    assert (entry.customer_id, entry.arm, entry.status) == (customer.pk, "treatment", "sent")
