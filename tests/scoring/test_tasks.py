"""A scoring run fanned out over a real Redis broker to a real worker, exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.db import connection

from customers.models import Customer
from scoring.models import CustomerScore, RunStatus, ScoringRun
from scoring.services.datasets import training_data_from_database
from scoring.services.training import churn_model_train
from scoring.tasks import scoring_chunk_task, scoring_run_task
from tests.scoring.conftest import write_labelled_customers
from tests.worker import celery_worker

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def test_a_run_fans_out_to_a_worker_and_a_retried_chunk_writes_nothing_twice(
    require_postgres: None, require_redis: str, tmp_path: Path, settings
) -> None:
    from customers.importers import import_file

    settings.MODEL_ARTIFACT_DIR = tmp_path / "models"
    import_file(kind="customers", path=write_labelled_customers(tmp_path / "c.csv", n=450))
    data = training_data_from_database(label_attribute="Churn")
    churn_model_train(data=data, candidates=["lr_balanced"], n_splits=3)
    worker_env = {"MODEL_ARTIFACT_DIR": str(tmp_path / "models"), "SCORING_CHUNK_CUSTOMERS": "100"}
    with celery_worker(require_redis, extra_env=worker_env) as queue:  # 5 chunks of 100
        started = scoring_run_task.apply_async(
            kwargs={"as_of": "2024-06-01", "run_key": "nightly-2024-06-01"}, queue=queue
        ).get(timeout=120)
        assert started["chunks"] == 5
        run = ScoringRun.objects.get(run_key="nightly-2024-06-01")
        for _ in range(240):
            run.refresh_from_db()
            if run.status != RunStatus.RUNNING:
                break
            time.sleep(0.5)
        assert run.status == RunStatus.COMPLETED
        # A chunk delivered again (as after a lost acknowledgement) adds nothing.
        first = Customer.objects.order_by("pk").values_list("pk", flat=True)[0]
        again = scoring_chunk_task.apply_async(args=[run.pk, first, first + 99], queue=queue)
        assert again.get(timeout=60) == 0
        # The worker keeps its database connection from task to task (CELERY_DB_REUSE_MAX):
        # Celery's default closed it after each, a new PostgreSQL backend per chunk.
        before = _other_backends()
        for _ in range(3):
            chunk = scoring_chunk_task.apply_async(args=[run.pk, first, first + 99], queue=queue)
            assert chunk.get(timeout=60) == 0
        assert before & _other_backends(), "each task had a database connection of its own"
        # A kept connection the server has dropped (a restart, a failover) is checked before
        # the next task uses it and replaced: the task does not fail.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid",
                [sorted(_other_backends())],
            )
        chunk = scoring_chunk_task.apply_async(args=[run.pk, first, first + 99], queue=queue)
        assert chunk.get(timeout=60) == 0
        second = scoring_run_task.apply_async(
            kwargs={"as_of": "2024-06-01", "run_key": "nightly-2024-06-01"}, queue=queue
        ).get(timeout=60)
    assert second["skipped"] == "already ran"
    assert run.customers_scored == 450 == CustomerScore.objects.filter(run=run).count()
    assert CustomerScore.objects.values("customer").distinct().count() == 450
    assert Customer.objects.filter(risk_tier="").count() == 0


def _other_backends() -> set[int]:
    """The PostgreSQL backends connected to the test database other than this test's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return {pid for (pid,) in cursor.fetchall()}
