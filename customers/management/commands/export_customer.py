import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.privacy import customer_export, customer_for_privacy_request


class Command(BaseCommand):
    help = (
        "Print (or write to --out) one JSON document with everything held about one customer: "
        "profile, attributes, consent, orders, events, scores, interventions, responses."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("external_id", help="The customer's id in the client's CRM")
        parser.add_argument("--out", type=Path, help="Write the JSON to this file instead")

    def handle(self, *args: Any, **options: Any) -> None:
        external_id = options["external_id"]
        customer = customer_for_privacy_request(external_id=external_id)
        if customer is None:
            raise CommandError(f"no customer with external id '{external_id}'")
        text = json.dumps(customer_export(customer=customer), indent=2, ensure_ascii=False)
        out: Path | None = options["out"]
        if out is None:
            self.stdout.write(text)
            return
        try:
            out.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot write {out}: {exc.strerror}") from exc
        self.stdout.write(f"Customer {external_id} exported to {out} ({len(text):,} characters).")
