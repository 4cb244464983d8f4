"""Services and reads of CycleRun: start (taking the one-cycle lock), record stage and chunk
progress (renewing the lock), finish or fail (releasing it), and the status text.

The lock is one CycleLock row read FOR UPDATE: a start whose lock is held and not expired is
refused with CycleBusy; an expired hold belongs to a run whose processes died (it stopped
renewing), so that run is marked failed and the new start takes the lock. Progress writes also
read the run FOR UPDATE, so chunks finishing at once on several workers never lose an update;
a chunk is recorded by its index, so a redelivered chunk counts once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from retention.models import CycleLock, CycleMode, CycleRun, CycleStatus, StageState

LOCK_NAME = "cycle"


class CycleBusy(Exception):
    """Another cycle holds the lock; the message says which, where it is and until when."""


def _lock_ttl() -> timedelta:
    return timedelta(seconds=settings.RETENTION_CYCLE_LOCK_SECONDS)


def _now_text() -> str:
    return timezone.now().isoformat()


def _describe(run: CycleRun) -> str:
    stage = run.current_stage or "between stages"
    return f"cycle {run.pk} (started {run.started_at:%Y-%m-%d %H:%M:%S} UTC, {stage})"


def cycle_run_start(
    *, stages: list[str], mode: str = CycleMode.INLINE, sources_path: str = "", trigger: str = ""
) -> CycleRun:
    """Create a running CycleRun holding the lock, or raise CycleBusy (nothing created)."""
    now = timezone.now()
    # Two first-ever starts at once: the other one created the row.
    with suppress(IntegrityError):
        CycleLock.objects.get_or_create(name=LOCK_NAME, defaults={"expires_at": now})
    with transaction.atomic():
        lock = CycleLock.objects.select_for_update().get(name=LOCK_NAME)
        holder = CycleRun.objects.filter(pk=lock.run_id).first() if lock.run_id else None
        if holder is not None and holder.status == CycleStatus.RUNNING:
            if lock.expires_at > now:
                raise CycleBusy(
                    f"another cycle is running: {_describe(holder)}; its lock is held until "
                    f"{lock.expires_at:%Y-%m-%d %H:%M:%S} UTC and renewed while it works. "
                    "Wait for it (retention_cycle --status shows where it is); a run whose "
                    "processes died frees the lock when it expires."
                )
            holder.status = CycleStatus.FAILED
            holder.finished_at = now
            holder.error = (
                f"its lock expired at {lock.expires_at:%Y-%m-%d %H:%M:%S} UTC without a renewal "
                f"(the processes running it stopped); cycle started at {now:%H:%M:%S} took over"
            )
            for stage in holder.stages:
                if stage["state"] == StageState.RUNNING:
                    stage["state"] = StageState.FAILED
            holder.save(update_fields=["status", "finished_at", "error", "stages"])
        run = CycleRun.objects.create(
            mode=mode,
            trigger=trigger or "command",
            sources_path=sources_path,
            stages=[_stage_entry(name) for name in stages],
        )
        lock.run = run
        lock.expires_at = now + _lock_ttl()
        lock.save()
    return run


def _stage_entry(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "state": StageState.PENDING,
        "chunks_total": None,
        "done": {},
        "rows": 0,
        "seconds": None,
        "started_at": None,
        "finished_at": None,
        "lines": [],
        "data": None,
        "context": {},
        "chunks": [],
    }


@contextmanager
def _locked(run_id: int) -> Iterator[CycleRun]:
    """The run read FOR UPDATE, saved on exit; the lock's expiry renewed if the run holds it."""
    with transaction.atomic():
        run = CycleRun.objects.select_for_update().get(pk=run_id)
        yield run
        run.save(update_fields=["stages", "status", "finished_at", "error"])
        if run.status == CycleStatus.RUNNING:
            CycleLock.objects.filter(name=LOCK_NAME, run_id=run_id).update(
                expires_at=timezone.now() + _lock_ttl()
            )


def cycle_stage_begin(
    *,
    run_id: int,
    name: str,
    chunks: list[Any] | None = None,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Mark a stage running; with `chunks`, record their arguments and total. A stage begun
    again (its start task redelivered) keeps the chunks and context it recorded first."""
    with _locked(run_id) as run:
        stage = run.stage(name)
        if stage["state"] == StageState.PENDING:
            stage["state"] = StageState.RUNNING
            stage["started_at"] = _now_text()
        if chunks is not None and stage["chunks_total"] is None:
            stage["chunks"] = chunks
            stage["chunks_total"] = len(chunks)
            stage["context"] = context or {}
        return dict(stage)


def cycle_chunk_done(
    *, run_id: int, name: str, index: int, rows: int, data: dict[str, Any] | None = None
) -> bool:
    """Record chunk `index` of a stage as done with its rows; False if it already was."""
    with _locked(run_id) as run:
        stage = run.stage(name)
        key = str(index)
        if key in stage["done"]:
            return False
        stage["done"][key] = {"rows": int(rows), "data": data}
        stage["rows"] = sum(int(d["rows"]) for d in stage["done"].values())
        return True


def cycle_stage_end(
    *,
    run_id: int,
    name: str,
    data: dict[str, Any] | None,
    lines: list[str],
    seconds: float | None = None,
) -> bool:
    """Mark a stage done (or skipped: `data` None) with its figures and summary lines; False
    if it had already ended (a redelivered finish: the caller must not start the next stage)."""
    with _locked(run_id) as run:
        stage = run.stage(name)
        if stage["state"] in (StageState.DONE, StageState.SKIPPED):
            return False
        stage["state"] = StageState.SKIPPED if data is None else StageState.DONE
        stage["data"] = data
        stage["lines"] = lines
        stage["finished_at"] = _now_text()
        if seconds is None and stage["started_at"]:
            started = datetime.fromisoformat(stage["started_at"])
            seconds = (timezone.now() - started).total_seconds()
        stage["seconds"] = round(seconds or 0.0, 3)
        if data is not None and not stage["rows"]:
            stage["rows"] = _rows_of(name, data)
    return True


def _rows_of(name: str, data: dict[str, Any]) -> int:
    """A plain stage's rows, read from its figures (what a person would count)."""
    if name == "import":
        return sum(int(f.get("created", 0)) + int(f.get("updated", 0)) for f in data["files"])
    if name == "uplift":
        return len(data.get("campaigns", []))
    return 0


def cycle_run_finish(*, run_id: int) -> CycleRun:
    with _locked(run_id) as run:
        run.status = CycleStatus.COMPLETED
        run.finished_at = timezone.now()
    CycleLock.objects.filter(name=LOCK_NAME, run_id=run_id).update(
        run=None, expires_at=timezone.now()
    )
    return run


def cycle_run_fail(*, run_id: int, stage: str, error: str) -> None:
    """Mark the run failed at `stage` and release the lock (a new cycle may start at once)."""
    with _locked(run_id) as run:
        if run.status != CycleStatus.RUNNING:
            return
        run.status = CycleStatus.FAILED
        run.finished_at = timezone.now()
        run.error = f"{stage}: {error}"[:5000]
        for entry in run.stages:
            if entry["name"] == stage:
                entry["state"] = StageState.FAILED
    CycleLock.objects.filter(name=LOCK_NAME, run_id=run_id).update(
        run=None, expires_at=timezone.now()
    )


def cycle_run_is_running(*, run_id: int) -> bool:
    return CycleRun.objects.filter(pk=run_id, status=CycleStatus.RUNNING).exists()


def cycle_run_latest() -> CycleRun | None:
    return CycleRun.objects.order_by("-started_at", "-pk").first()


def stage_progress_text(stage: dict[str, Any]) -> str:
    """ "3 / 20 chunks · 150,000 rows · 41.2 s" (only what is known)."""
    parts = []
    if stage.get("chunks_total"):
        parts.append(f"{len(stage['done'])} / {stage['chunks_total']} chunks")
    if stage.get("rows"):
        parts.append(f"{stage['rows']:,} row{'s' if stage['rows'] != 1 else ''}")
    if stage.get("seconds") is not None:
        parts.append(f"{stage['seconds']:,.1f} s")
    return " · ".join(parts)


def cycle_status_lines(run: CycleRun | None) -> list[str]:
    """What `retention_cycle --status` prints: the run, then one line per stage."""
    if run is None:
        return ["No cycle has run yet (retention_cycle starts one; beat runs it nightly)."]
    took = ""
    if run.finished_at:
        took = f", took {(run.finished_at - run.started_at).total_seconds():,.1f} s"
    lines = [
        f"Cycle {run.pk}: {run.get_status_display().lower()} · {run.get_mode_display().lower()} · "
        f"started {run.started_at:%Y-%m-%d %H:%M:%S} UTC by {run.trigger}{took}"
    ]
    if run.error:
        lines.append(f"  error: {run.error}")
    for stage in run.stages:
        label = StageState(stage["state"]).label
        progress = stage_progress_text(stage)
        lines.append(f"  {stage['name']:<10} {label:<8} {progress}".rstrip())
    lock = CycleLock.objects.filter(name=LOCK_NAME, run_id=run.pk).first()
    if lock is not None and run.status == CycleStatus.RUNNING:
        lines.append(f"  lock held until {lock.expires_at:%Y-%m-%d %H:%M:%S} UTC (renewed)")
    return lines
