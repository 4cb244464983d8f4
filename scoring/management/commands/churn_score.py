import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from common.tables import spreadsheet_safe
from customers.selectors import customer_count
from scoring.errors import ScoringError, TrainingError
from scoring.reports import format_run
from scoring.services.runs import parse_as_of, scoring_run_execute
from scoring.services.training import file_score


class Command(BaseCommand):
    help = (
        "Score every customer with the active model (a scoring run), or with --csv score the "
        "rows of a file with a model trained by churn_train --csv and write them to --out."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--as-of", help="Score as of this date (default: today, midnight UTC)")
        parser.add_argument(
            "--run-key", help="Unique key of the run (a second run with it is skipped)"
        )
        parser.add_argument("--csv", type=Path, help="Score the rows of this CSV/XLSX file")
        parser.add_argument(
            "--model", help="Model version (default: the latest file-trained model)"
        )
        parser.add_argument("--out", type=Path, help="Where --csv writes its scores (CSV)")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["csv"]:
                self._score_file(options)
                return
            as_of = parse_as_of(options["as_of"])
            total = customer_count()
            bar = tqdm(
                total=total, unit="customers", disable=options["no_progress"], file=sys.stderr
            )
            run = scoring_run_execute(
                as_of=as_of, run_key=options["run_key"], on_chunk=lambda _first, n: bar.update(n)
            )
            bar.close()
        except (ScoringError, TrainingError) as exc:
            raise CommandError(str(exc)) from exc
        if run is None:
            self.stdout.write(f"Run {options['run_key']} already exists: nothing done.")
            return
        self.stdout.write(format_run(run))

    def _score_file(self, options: dict[str, Any]) -> None:
        if not options["out"]:
            raise CommandError("--csv needs --out PATH")
        frame = file_score(path=options["csv"], version=options["model"])
        spreadsheet_safe(frame).to_csv(options["out"], index=False)
        tiers = frame["tier"].value_counts().to_dict()
        self.stdout.write(
            f"Scored {len(frame):,} rows with model {frame.attrs['model']} → {options['out']}\n"
            f"  tiers: {tiers}"
        )
