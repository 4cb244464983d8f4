import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.errors import ScoringError, TrainingError
from scoring.reports import format_training_report
from scoring.services.datasets import training_data_from_database, training_data_from_file
from scoring.services.runs import parse_as_of
from scoring.services.training import churn_model_train
from scoring.services.transfer import (
    churn_model_transfer_record,
    transfer_source_load,
    transfer_summary,
)


class Command(BaseCommand):
    help = (
        "Train churn models, print every candidate's out-of-fold metrics and register the "
        "selected one. Labels: --label-attribute COLUMN (snapshot data), --as-of DATE "
        "--horizon DAYS (no order within the horizon = churned), or --csv PATH --label COLUMN "
        "to train and evaluate straight from a file."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--label-attribute", help="Customer attribute holding the label")
        parser.add_argument("--as-of", help="Cutoff date for a behaviour label (YYYY-MM-DD)")
        parser.add_argument("--horizon", type=int, help="Days after the cutoff without an order")
        parser.add_argument("--csv", type=Path, help="Train from this labelled CSV/XLSX file")
        parser.add_argument("--label", help="Label column of --csv")
        parser.add_argument("--id", dest="id_column", help="Identifier column of --csv")
        parser.add_argument(
            "--drop", default="", help="Comma-separated columns to leave out (e.g. RowNumber)"
        )
        parser.add_argument(
            "--candidates",
            default="default",
            help="'default', 'extended', or comma-separated candidate names",
        )
        parser.add_argument("--folds", type=int, default=5, help="Cross-validation folds")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--offer-cost", type=float, help="Cost of one offer (cost threshold)")
        parser.add_argument("--customer-value", type=float, help="Value of a retained customer")
        parser.add_argument("--json", action="store_true", help="Print the metrics as JSON")
        parser.add_argument(
            "--transfer-from",
            metavar="MODEL_VERSION",
            help="A source model (a registered version, or an exported model's .json from "
            "churn_export): compare the target alone with each transfer method and record the "
            "source and the outcome on the new model (docs/transfer.md)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        drop = [d.strip() for d in options["drop"].split(",") if d.strip()]
        candidates: str | list[str] = options["candidates"]
        if candidates not in ("default", "extended"):
            candidates = [c.strip() for c in str(candidates).split(",") if c.strip()]
        try:
            if options["csv"]:
                if not options["label"]:
                    raise CommandError("--csv needs --label COLUMN")
                data = training_data_from_file(
                    path=options["csv"],
                    label=options["label"],
                    id_column=options["id_column"],
                    drop=drop,
                )
            else:
                as_of = parse_as_of(options["as_of"]) if options["as_of"] else None
                data = training_data_from_database(
                    label_attribute=options["label_attribute"],
                    as_of=as_of,
                    horizon_days=options["horizon"],
                    drop=drop,
                )
            source = None
            if options["transfer_from"]:
                source = transfer_source_load(ref=options["transfer_from"])
            progress = None if options["json"] else (lambda m: self.stderr.write(m))
            outcome = churn_model_train(
                data=data,
                candidates=candidates,
                n_splits=options["folds"],
                random_state=options["seed"],
                offer_cost=options["offer_cost"],
                customer_value=options["customer_value"],
                register_only=bool(options["csv"]),
                progress=progress,
            )
            if source is not None:
                result = churn_model_transfer_record(
                    model=outcome.model, data=data, source=source[0], described=source[1]
                )
                if not options["json"]:
                    self.stderr.write(transfer_summary(result.to_dict()))
        except (TrainingError, ScoringError) as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            payload = outcome.to_dict()
            if source is not None:
                outcome.model.refresh_from_db(fields=["transfer"])
                payload["transfer"] = outcome.model.transfer
            self.stdout.write(json.dumps(payload, indent=2, default=str))
        else:
            self.stdout.write(format_training_report(outcome.to_dict()))
