from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.errors import TrainingError
from scoring.services.transfer import churn_model_import


class Command(BaseCommand):
    help = (
        "Register a churn model exported by churn_export on another installation (the .json, "
        "with its .skops beside it). The checksum and the type allow-list are checked before "
        "anything is loaded; the model is registered as a candidate, never activated."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="The exported model's .json")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            model = churn_model_import(path=options["path"])
        except (TrainingError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"imported {model.version} as a candidate (not active)")
