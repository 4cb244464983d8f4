from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.models import ApiClient, ApiScope
from customers.services import api_client_create


class Command(BaseCommand):
    help = "Create an API client and print its key once (only a hash is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--scope",
            action="append",
            choices=[s.value for s in ApiScope],
            help=(
                "Grant this scope (repeatable; default: every scope but customers:erase and "
                "customers:export, which are granted only by name)"
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if ApiClient.objects.filter(name=options["name"]).exists():
            raise CommandError(f"an API client named '{options['name']}' already exists")
        client, key = api_client_create(name=options["name"], scopes=options["scope"])
        self.stdout.write(
            f"API client '{client.name}' created with scopes: {', '.join(client.scopes)}"
        )
        self.stdout.write("Its key (shown once; store it now):")
        self.stdout.write(key)
        self.stdout.write("Send it as the header:  Authorization: Api-Key <key>")
