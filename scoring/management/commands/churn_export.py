from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.errors import TrainingError
from scoring.models import ChurnModel
from scoring.services.transfer import churn_model_export


class Command(BaseCommand):
    help = (
        "Export a registered churn model for another installation: its skops artifact and a "
        "metadata JSON (SHA-256, feature spec, label, threshold, reference values, library "
        "versions) written into DIRECTORY. Import it there with churn_import, or use it as "
        "churn_train --transfer-from PATH.json."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", help="The model's version (Scoring › Churn models)")
        parser.add_argument("directory", type=Path, help="Where to write the two files")

    def handle(self, *args: Any, **options: Any) -> None:
        model = ChurnModel.objects.filter(version=options["version"]).first()
        if model is None:
            raise CommandError(f"no registered model {options['version']}")
        try:
            path = churn_model_export(model=model, directory=options["directory"])
        except (TrainingError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"exported {model.version}: {path} and {path.with_suffix('.skops')}")
