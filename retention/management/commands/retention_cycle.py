"""`retention_cycle`: the service's main job, every stage in order (retention/cycle.py), as one
recorded run: in this process (the default) or on Celery workers (--workers); --status shows
where the latest run is."""

import json
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from retention.cycle import (
    STAGES,
    CycleError,
    CycleOptions,
    StageResult,
    cycle_start_on_workers,
    run_cycle,
)
from retention.cycle_runs import cycle_run_latest, cycle_status_lines
from retention.models import CycleRun, CycleStatus, StageState
from retention.sources import SourcesError, sources_load


class Command(BaseCommand):
    help = (
        "Run the retention cycle: every stage in order ("
        + ", ".join(name for name, _ in STAGES)
        + "), printing each stage's summary. One cycle at a time: a second start is refused."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--sources",
            type=Path,
            help="JSON sources file: the files to import, the campaigns to seed, scoring options "
            "(default: the RETENTION_SOURCES setting)",
        )
        parser.add_argument(
            "--only", nargs="+", metavar="STAGE", help="Run only these stages, in cycle order"
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object")
        parser.add_argument("--no-progress", action="store_true", help="Hide progress bars")
        parser.add_argument(
            "--workers",
            action="store_true",
            help="Run the stages on Celery workers (needs REDIS_URL and running workers); "
            "waits and prints each stage's summary as it ends, unless --detach",
        )
        parser.add_argument(
            "--detach", action="store_true", help="With --workers: start the cycle and return"
        )
        parser.add_argument(
            "--status",
            action="store_true",
            help="Show the latest cycle: each stage's state, chunks done / total, rows, seconds",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["status"]:
            run = cycle_run_latest()
            if options["json"]:
                self.stdout.write(json.dumps(_status_json(run), indent=2, default=str))
            else:
                self.stdout.write("\n".join(cycle_status_lines(run)))
            return
        try:
            sources = sources_load(options["sources"])
        except SourcesError as exc:
            raise CommandError(str(exc)) from exc
        progress = not options["json"] and not options["no_progress"]
        cycle = CycleOptions(sources=sources, progress=progress, workers=options["workers"])

        def show(name: str, result: StageResult) -> None:
            if options["json"]:
                return
            self.stdout.write(self.style.MIGRATE_HEADING(f"== {name} =="))
            for line in result.lines:
                self.stdout.write(line)

        try:
            if options["workers"]:
                run = cycle_start_on_workers(cycle, only=options["only"])
                if options["detach"]:
                    self.stdout.write(
                        f"Cycle {run.pk} started on the workers; follow it with "
                        "manage.py retention_cycle --status"
                    )
                    return
                results = _follow(run.pk, show)
            else:
                results = run_cycle(cycle, only=options["only"], on_stage=show)
        except CycleError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(results, indent=2, default=str))


def _follow(run_id: int, show: Any) -> dict[str, Any]:
    """Wait for a run on workers, showing each stage's summary as it ends; its results."""
    shown: set[str] = set()
    results: dict[str, Any] = {}
    while True:
        run = CycleRun.objects.get(pk=run_id)
        for stage in run.stages:
            if stage["state"] == StageState.DONE and stage["name"] not in shown:
                shown.add(stage["name"])
                results[stage["name"]] = stage["data"]
                show(stage["name"], StageResult(stage["data"], stage["lines"]))
        if run.status == CycleStatus.FAILED:
            raise CycleError(f"cycle {run.pk} failed: {run.error}")
        if run.status == CycleStatus.COMPLETED:
            return results
        time.sleep(0.5)


def _status_json(run: CycleRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "cycle": run.pk,
        "status": run.status,
        "mode": run.mode,
        "trigger": run.trigger,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "error": run.error,
        "stages": [
            {
                "name": s["name"],
                "state": s["state"],
                "chunks_done": len(s["done"]),
                "chunks_total": s["chunks_total"],
                "rows": s["rows"],
                "seconds": s["seconds"],
            }
            for s in run.stages
        ],
    }
