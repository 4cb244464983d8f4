import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from campaigns.services.setup import campaigns_seed


class Command(BaseCommand):
    help = "Create the demo campaign (offers, templates, rules) from a JSON file if it is missing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "path", nargs="?", type=Path, default=settings.BASE_DIR / "demo" / "campaigns.json"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        created = campaigns_seed(spec=json.loads(options["path"].read_text()))
        if created:
            self.stdout.write("Created: " + ", ".join(c.name for c in created))
        else:
            self.stdout.write("The demo campaigns exist already; nothing changed.")
