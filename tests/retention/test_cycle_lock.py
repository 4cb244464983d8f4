"""The cycle as one recorded run, in this process: its CycleRun, --status, and the lock that
lets one cycle run at a time (a second start refused, a dead run's lock expiring)."""

from __future__ import annotations

import json
import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from retention.cycle_runs import cycle_run_start
from retention.models import CycleLock, CycleRun, CycleStatus
from tests.campaigns.conftest import make_customers

pytestmark = pytest.mark.django_db

DEMO_SOURCES = Path(__file__).resolve().parents[2] / "demo" / "sources.json"


def _cycle(*args: str) -> str:
    out = StringIO()
    call_command("retention_cycle", *args, stdout=out)
    return out.getvalue()


def test_a_second_cycle_is_refused_while_one_runs_with_a_message_naming_it() -> None:
    running = cycle_run_start(stages=["scoring", "dispatch"], trigger="beat")
    with pytest.raises(CommandError) as refused:
        _cycle("--sources", str(DEMO_SOURCES), "--only", "dispatch", "--no-progress")
    message = str(refused.value)
    assert f"another cycle is running: cycle {running.pk}" in message
    assert "retention_cycle --status" in message and "lock is held until" in message
    assert CycleRun.objects.count() == 1  # the refused start left nothing behind
    status = _cycle("--status")
    assert f"Cycle {running.pk}: running" in status and "lock held until" in status


def test_a_lock_left_by_a_dead_run_expires_and_the_next_start_takes_over(settings: Any) -> None:
    settings.RETENTION_CYCLE_LOCK_SECONDS = 1
    dead = cycle_run_start(stages=["scoring"])  # its process "died": nothing renews the lock
    with pytest.raises(Exception, match="another cycle is running"):
        cycle_run_start(stages=["scoring"])
    time.sleep(1.2)
    make_customers(3, churn_probability=None, risk_tier="")
    _cycle("--sources", str(DEMO_SOURCES), "--only", "dispatch", "--no-progress")
    dead.refresh_from_db()
    assert dead.status == CycleStatus.FAILED and "lock expired" in dead.error
    latest = CycleRun.objects.order_by("-pk").first()
    assert latest is not None and latest.status == CycleStatus.COMPLETED
    assert CycleLock.objects.get().run_id is None  # released at the end


def test_an_inline_cycle_records_each_stage_and_status_shows_it(settings: Any) -> None:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    make_customers(40, risk_tier="critical")
    out = _cycle("--sources", str(DEMO_SOURCES), "--only", "dispatch", "relay", "--json")
    assert json.loads(out)["dispatch"]["campaigns"][0]["eligible"] == 40
    run = CycleRun.objects.get()
    assert run.status == CycleStatus.COMPLETED and run.mode == "inline"
    dispatch, relay = run.stages
    assert dispatch["state"] == "done" and dispatch["chunks_total"] == 1
    assert dispatch["rows"] == 40  # interventions written, both arms
    assert relay["state"] == "skipped"  # embedded: dispatch delivered already
    status = _cycle("--status")
    assert "completed" in status and "1 / 1 chunks · 40 rows" in status
    status_json = json.loads(_cycle("--status", "--json"))
    assert status_json["stages"][0] == {
        "name": "dispatch",
        "state": "done",
        "chunks_done": 1,
        "chunks_total": 1,
        "rows": 40,
        "seconds": dispatch["seconds"],
    }


def test_a_failing_stage_fails_the_run_and_releases_the_lock(tmp_path: Path) -> None:
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps({"imports": [{"kind": "orders", "path": "missing.csv"}]}))
    with pytest.raises(CommandError):
        _cycle("--sources", str(sources), "--only", "import", "--no-progress")
    run = CycleRun.objects.get()
    assert run.status == CycleStatus.FAILED and run.error.startswith("import:")
    assert run.stages[0]["state"] == "failed"
    assert CycleLock.objects.get().run_id is None


def test_the_overview_shows_where_the_cycle_is(admin_client: Any) -> None:
    from retention.cycle_runs import cycle_chunk_done, cycle_stage_begin

    run = cycle_run_start(stages=["scoring", "dispatch"], trigger="beat")
    cycle_stage_begin(run_id=run.pk, name="scoring", chunks=[[1, 50], [51, 100], [101, 150]])
    cycle_chunk_done(run_id=run.pk, name="scoring", index=0, rows=50_000)
    cycle_chunk_done(run_id=run.pk, name="scoring", index=0, rows=50_000)  # redelivered
    page = admin_client.get("/admin/").content.decode()
    section = page[page.index('id="overview-cycle-run"') :]
    assert f"Cycle run {run.pk}: running" in section and "by beat" in section
    row = section[section.index("<td>Scoring</td>") :]
    assert "Running" in row[:200] and "1 of 3" in row[:300] and "50,000" in row[:400]
    assert "<td>Dispatch</td><td>Waiting</td>" in section
