"""`retention_cycle`: the service's main job, every stage in order (retention/cycle.py)."""

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from retention.cycle import STAGES, CycleError, CycleOptions, StageResult, run_cycle
from retention.sources import SourcesError, sources_load


class Command(BaseCommand):
    help = (
        "Run the retention cycle: every stage in order ("
        + ", ".join(name for name, _ in STAGES)
        + "), printing each stage's summary."
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

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            sources = sources_load(options["sources"])
        except SourcesError as exc:
            raise CommandError(str(exc)) from exc
        cycle = CycleOptions(
            sources=sources, progress=not options["json"] and not options["no_progress"]
        )

        def show(name: str, result: StageResult) -> None:
            if options["json"]:
                return
            self.stdout.write(self.style.MIGRATE_HEADING(f"== {name} =="))
            for line in result.lines:
                self.stdout.write(line)

        try:
            results = run_cycle(cycle, only=options["only"], on_stage=show)
        except CycleError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps(results, indent=2, default=str))
