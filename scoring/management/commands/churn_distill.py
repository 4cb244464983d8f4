from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scoring.errors import ScoringError, TrainingError
from scoring.models import ChurnModel
from scoring.selectors import churn_model_active
from scoring.services.distill import churn_model_distill


class Command(BaseCommand):
    help = (
        "(Re)distil a registered churn model into its readable student (a tree of at most 4 "
        "levels, shown as rules on the model's admin page and usable as campaign segments) "
        "and store it. Default: the active model. Customers get the new leaves at the next "
        "scoring run."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # `--version V` names the model (as the brief and docs say): it replaces Django's own.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--version", dest="model_version", help="Model version to distil")

    def handle(self, *args: Any, **options: Any) -> None:
        version = options["model_version"]
        model = (
            ChurnModel.objects.filter(version=version).first() if version else churn_model_active()
        )
        if model is None:
            raise CommandError(
                f"no churn model {version!r}" if version else "there is no active churn model"
            )
        try:
            student = churn_model_distill(model=model)
        except (TrainingError, ScoringError) as exc:
            raise CommandError(str(exc)) from exc
        fidelity = student.fidelity
        self.stdout.write(
            f"model {model.version}: {len(student.leaves)} rules, depth {student.depth}; "
            f"fidelity on {student.rows.get('test', 0):,} unseen rows: correlation "
            f"{fidelity.get('correlation', float('nan')):.3f}, top-decile agreement "
            f"{fidelity.get('top_decile_agreement', float('nan')):.0%}"
        )
        for leaf in sorted(student.leaves, key=lambda leaf: -leaf.risk):
            self.stdout.write(
                f"  {student.rule_text(leaf)} → risk {leaf.risk:.0%}, {leaf.customers:,} customers"
            )
