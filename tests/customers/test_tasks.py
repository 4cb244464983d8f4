"""A Celery round trip through the real Redis broker and a real worker process."""

from __future__ import annotations

from pathlib import Path

import pytest

from customers.models import Customer
from customers.tasks import import_file_task
from tests.worker import celery_worker

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_an_import_task_runs_in_a_real_worker_through_redis(
    require_postgres: None, require_redis: str, tmp_path: Path
) -> None:
    path = tmp_path / "customers.csv"
    path.write_text("id,email,plan\nw1,w1@example.com,gold\nw2,w2@example.com,silver\n")
    with celery_worker(require_redis) as queue:
        result = import_file_task.apply_async(
            kwargs={"kind": "customers", "path": str(path)}, queue=queue
        )
        summary = result.get(timeout=60)
        again = import_file_task.apply_async(
            kwargs={"kind": "customers", "path": str(path)}, queue=queue
        ).get(timeout=60)
    assert summary["created"] == 2 and summary["rejected"] == 0
    assert again["unchanged"] == 2  # a redelivered task changes nothing
    assert Customer.objects.get(external_id="w2").attributes == {"plan": "silver"}
