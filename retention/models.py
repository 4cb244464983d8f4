"""The record of a retention cycle (one row per run) and the lock that lets one run at a time.

They live on the top floor because a cycle spans every app's stage (the demo's included): no
lower app may know the list of stages. The stages' own figures stay in their apps' tables
(ScoringRun, CampaignCycle, UpliftReport); a CycleRun holds where the run is: each stage's
state, chunks done / total, rows and seconds (retention/cycle_runs.py writes it).
"""

from __future__ import annotations

from typing import Any

from django.db import models


class CycleStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class CycleMode(models.TextChoices):
    INLINE = "inline", "In this process"
    WORKERS = "workers", "On Celery workers"


class StageState(models.TextChoices):
    PENDING = "pending", "Waiting"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"


class CycleRun(models.Model):
    """One run of the retention cycle, inline or on workers.

    `stages` is a list, in cycle order, of {"name", "state", "chunks_total", "done" (chunk index
    → rows: a set, so a redelivered chunk counts once), "rows", "seconds", "started_at",
    "finished_at", "lines" (the stage's summary), "data" (its JSON figures), "context" (what
    the stage's start hands to its chunks and finish), "chunks" (each chunk's arguments)}.
    """

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=CycleStatus.choices, default=CycleStatus.RUNNING
    )
    mode = models.CharField(max_length=16, choices=CycleMode.choices)
    trigger = models.CharField(
        max_length=32, default="command", help_text="Who started it: command, beat or admin."
    )
    sources_path = models.CharField(max_length=1000, blank=True, default="")
    stages = models.JSONField(default=list)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-started_at", "-pk"]
        indexes = [models.Index(fields=["-started_at"], name="cyclerun_started")]

    def __str__(self) -> str:
        return f"cycle {self.pk} ({self.status}, {self.started_at:%Y-%m-%d %H:%M} UTC)"

    def stage(self, name: str) -> dict[str, Any]:
        return next(s for s in self.stages if s["name"] == name)

    @property
    def current_stage(self) -> str:
        running = [s["name"] for s in self.stages if s["state"] == StageState.RUNNING]
        return running[0] if running else ""


class CycleLock(models.Model):
    """One row per lock name: the run holding it and when the hold ends unless renewed. A run
    renews it after every chunk; a run whose processes died stops renewing, so the lock frees
    itself at `expires_at` and the next start takes it (marking the dead run failed)."""

    name = models.CharField(max_length=32, primary_key=True)
    run = models.ForeignKey(CycleRun, null=True, blank=True, on_delete=models.SET_NULL)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"lock {self.name} (run {self.run_id}, until {self.expires_at})"
