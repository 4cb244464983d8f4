"""The nightly cycle on real Celery workers (real Redis broker, real worker processes, the test
PostgreSQL database): the same scores, interventions and reports as the cycle run in-process,
and a worker SIGKILLed in the middle of the scoring stage costs nothing but time."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from campaigns.models import CampaignCycle, Coupon, Intervention, UpliftReport
from customers.models import Customer
from retention.celery import app as celery_app
from retention.cycle import CycleOptions, cycle_start_on_workers, run_cycle
from retention.models import CycleRun, CycleStatus
from retention.sources import sources_load
from scoring.models import CustomerScore, ScoringRun
from tests.scoring.conftest import write_labelled_customers
from tests.worker import RunningWorker, celery_worker_process

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CUSTOMERS = 1200
CHUNK = 100  # 12 scoring chunks, so two workers share them and a kill lands mid-stage
DEMO_CAMPAIGNS = Path(__file__).resolve().parents[2] / "demo" / "telco_campaigns.json"


def _sources(tmp_path: Path) -> Path:
    customers = write_labelled_customers(tmp_path / "customers.csv", n=CUSTOMERS)
    path = tmp_path / "sources.json"
    path.write_text(
        json.dumps(
            {
                "imports": [{"kind": "customers", "path": str(customers)}],
                "campaigns": str(DEMO_CAMPAIGNS),
                "scoring": {
                    "as_of": "2024-06-01",
                    "train": {"label_attribute": "Churn", "candidates": ["lr_balanced"]},
                },
            }
        )
    )
    return path


def _worker_env(tmp_path: Path) -> dict[str, str]:
    return {
        "MODEL_ARTIFACT_DIR": str(tmp_path / "models"),
        "SCORING_CHUNK_CUSTOMERS": str(CHUNK),
        "CAMPAIGN_QUIET_HOURS": "0-0",
        "EMAIL_BACKEND": "locmem",
        "CAMPAIGN_RATE_EMAIL": "1000000",
        "CAMPAIGN_RATE_SMS": "1000000",
        # A whole worker killed: its unacknowledged task comes back after the visibility
        # timeout (production: 2 h, above the 30 min task limit); here 20 s above a 15 s limit,
        # and the workers look for such tasks every 2 s (production: 10 s).
        "CELERY_TASK_TIME_LIMIT": "15",
        "CELERY_VISIBILITY_TIMEOUT": "20",
        "CELERY_UNACKED_RESTORE_SECONDS": "2",
    }


@pytest.fixture
def queue(settings: Any) -> str:
    """A private queue for this test's workers; the test process publishes the cycle's first
    task to it too (the workers' own tasks stay on it: CELERY_TASK_DEFAULT_QUEUE)."""
    settings.CELERY_TASK_DEFAULT_QUEUE = f"test-{uuid.uuid4().hex[:8]}"
    return str(settings.CELERY_TASK_DEFAULT_QUEUE)


@pytest.fixture
def cycle_settings(settings: Any, tmp_path: Path) -> Any:
    settings.MODEL_ARTIFACT_DIR = tmp_path / "models"
    settings.SCORING_CHUNK_CUSTOMERS = CHUNK
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CAMPAIGN_RATE_PER_MINUTE = {k: 1_000_000 for k in settings.CAMPAIGN_RATE_PER_MINUTE}
    return settings


def _start_workers(
    stack: ExitStack, redis_url: str, env: dict[str, str], queue: str, *, count: int
) -> list[RunningWorker]:
    """`count` worker processes on one queue, started at once (each start imports Django,
    pandas and scikit-learn: a minute on a loaded machine)."""
    managers = [celery_worker_process(redis_url, extra_env=env, queue=queue) for _ in range(count)]
    with ThreadPoolExecutor(count) as pool:
        workers = list(pool.map(lambda manager: manager.__enter__(), managers))
    for manager in managers:
        stack.push(manager.__exit__)
    return workers


def _wait(run: CycleRun, *, timeout: float) -> CycleRun:
    """Until the run ends; a bound for a hung cycle on a loaded machine, not a measurement."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.status != CycleStatus.RUNNING:
            return run
        time.sleep(0.2)
    pytest.fail(f"the cycle did not end within {timeout:.0f} s: {run.stages}")


def _outcome() -> dict[str, Any]:
    """Everything a cycle decides, without ids, times or durations."""
    scores = sorted(
        CustomerScore.objects.values_list(
            "customer__external_id", "probability", "tier", "scorable", "reasons"
        ),
        key=lambda row: row[0],
    )
    interventions = sorted(
        Intervention.objects.values_list(
            "customer__external_id", "campaign__name", "arm", "channel", "status", "rule__name"
        )
    )
    reports = sorted(
        (
            r.kind,
            json.dumps(_strip(r.figures), sort_keys=True, default=str),
        )
        for r in UpliftReport.objects.all()
    )
    latest = sorted(Customer.objects.values_list("external_id", "churn_probability", "risk_tier"))
    return {
        "scores": [
            (e, round(p, 12) if p is not None else None, t, s, r) for e, p, t, s, r in scores
        ],
        "interventions": interventions,
        "coupons": Coupon.objects.count(),
        "reports": reports,
        "latest": latest,
    }


VOLATILE = {"id", "measured_at", "generated_at", "seconds", "as_of", "updated_at", "created_at"}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip(v)
            for k, v in value.items()
            if k not in VOLATILE and not k.endswith(("_id", "_at"))
        }
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _forget_the_cycle() -> None:
    """Back to the imported data and the trained model: no scores, interventions or reports."""
    UpliftReport.objects.all().delete()
    Coupon.objects.all().delete()
    Intervention.objects.all().delete()
    CampaignCycle.objects.all().delete()
    ScoringRun.objects.all().delete()
    Customer.objects.update(churn_probability=None, risk_tier="", scored_at=None)


def test_a_cycle_on_two_workers_gives_exactly_what_the_inline_cycle_gives(
    require_postgres: None, require_redis: str, cycle_settings: Any, tmp_path: Path, queue: str
) -> None:
    sources = sources_load(_sources(tmp_path))
    celery_app.conf.task_always_eager = True  # the embedded default: no broker
    started = time.monotonic()
    run_cycle(CycleOptions(sources=sources))
    print(f"inline cycle: {time.monotonic() - started:.1f} s")
    inline = _outcome()
    assert len(inline["scores"]) == CUSTOMERS and inline["interventions"]
    assert {status for *_, status, _rule in inline["interventions"]} >= {"sent", "held_out"}
    _forget_the_cycle()

    celery_app.conf.task_always_eager = False
    env = _worker_env(tmp_path)
    with ExitStack() as stack:
        _start_workers(stack, require_redis, env, queue, count=2)
        print(f"workers up: {time.monotonic() - started:.1f} s")
        run = _wait(cycle_start_on_workers(CycleOptions(sources=sources)), timeout=240)
        print(f"worker cycle: {time.monotonic() - started:.1f} s")
    assert run.status == CycleStatus.COMPLETED, run.error
    scoring = next(s for s in run.stages if s["name"] == "scoring")
    assert scoring["chunks_total"] == CUSTOMERS // CHUNK == len(scoring["done"])
    assert scoring["rows"] == CUSTOMERS
    states = {s["name"]: s["state"] for s in run.stages}
    # The demo's contacts, simulate and second-cycle stages have no entry in these sources:
    # skipped.
    assert states == {
        "import": "done",
        "contacts": "skipped",
        "scoring": "done",
        "recommendations": states["recommendations"],  # no order lines: nothing to refresh
        "dispatch": "done",
        "relay": "done",
        "simulate": "skipped",
        "uplift": "done",
        "second_cycle": "skipped",
    }
    assert states["recommendations"] in {"done", "skipped"}
    assert _outcome() == inline


def test_a_worker_killed_mid_scoring_costs_only_time(
    require_postgres: None, require_redis: str, cycle_settings: Any, tmp_path: Path, queue: str
) -> None:
    sources = sources_load(_sources(tmp_path))
    celery_app.conf.task_always_eager = True
    run_cycle(CycleOptions(sources=sources), only=["import", "scoring"])  # data and a model
    ScoringRun.objects.all().delete()
    celery_app.conf.task_always_eager = False
    env = _worker_env(tmp_path)
    with ExitStack() as stack:
        victim, _other = _start_workers(stack, require_redis, env, queue, count=2)
        run = cycle_start_on_workers(CycleOptions(sources=sources), only=["scoring", "dispatch"])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            run.refresh_from_db()
            done = len(run.stages[0]["done"])
            if done >= 2:
                break
            time.sleep(0.02)
        total = run.stages[0]["chunks_total"]
        assert total and 2 <= done < total, "the kill must land in the middle of the stage"
        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(timeout=10)
        stack.enter_context(celery_worker_process(require_redis, extra_env=env, queue=queue))
        run = _wait(run, timeout=180)
    assert run.status == CycleStatus.COMPLETED, run.error
    scores = Counter(CustomerScore.objects.values_list("customer_id", flat=True))
    assert len(scores) == CUSTOMERS and set(scores.values()) == {1}
    per_customer = Counter(Intervention.objects.values_list("campaign_id", "customer_id"))
    assert per_customer and set(per_customer.values()) == {1}
    assert run.stages[0]["rows"] == CUSTOMERS and len(run.stages[0]["done"]) == total
