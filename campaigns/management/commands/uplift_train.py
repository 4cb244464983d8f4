"""manage.py uplift_train --campaign KEY [--now ISO]: train an uplift model on the campaign's
finished interventions and register it (champion when it beats the current one)."""

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from campaigns.selectors import campaign_by_key_or_id
from campaigns.services.uplift_models import uplift_model_train


def _when(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(
            f"--now: expected an ISO date-time such as 2026-11-30T08:00, got {value!r}"
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = "Train an uplift model on a campaign's randomised interventions whose window ended."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--campaign", required=True, help="The campaign's key or id.")
        parser.add_argument("--now", type=_when, default=None, help="ISO date-time (default now).")

    def handle(self, *args: Any, **options: Any) -> None:
        campaign = campaign_by_key_or_id(options["campaign"])
        if campaign is None:
            raise CommandError(f"--campaign: no campaign with key or id {options['campaign']!r}")
        now = options["now"] or timezone.now()
        self.stdout.write(f"campaign {campaign.name}: training as of {now:%Y-%m-%d %H:%M} UTC")
        result = uplift_model_train(
            campaign=campaign, now=now, progress=lambda line: self.stdout.write(f"  {line}")
        )
        if result.model is None:
            raise CommandError(result.message)
        self.stdout.write(self.style.SUCCESS(result.message))
