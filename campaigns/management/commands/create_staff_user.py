import os
import sys
from getpass import getpass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from campaigns.roles import ROLE_NAMES, role_group
from campaigns.services.setup import staff_user_create


class Command(BaseCommand):
    help = (
        "Create a staff user in one role: crm (campaigns, offers, templates; reads customers, "
        "scores and reports), analyst (reads reports and customers) or agent (own callbacks)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=ROLE_NAMES)
        parser.add_argument("--email", default="")
        parser.add_argument(
            "--password-from-env",
            metavar="VAR",
            help="Read the password from this environment variable (else it is asked for).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password = self._password(options["password_from_env"])
        try:
            user = staff_user_create(
                username=options["username"],
                role=options["role"],
                password=password,
                email=options["email"],
            )
        except ValidationError as exc:
            raise CommandError("Password refused: " + " ".join(exc.messages)) from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"Created staff user {user.username!r} in the group {role_group(options['role'])!r}."
        )

    def _password(self, variable: str | None) -> str:
        if variable:
            value = os.environ.get(variable, "")
            if not value:
                raise CommandError(f"--password-from-env {variable}: that variable is not set.")
            return value
        if not sys.stdin.isatty():
            raise CommandError(
                "No password: pass --password-from-env VAR, or run in a terminal to be asked."
            )
        first = getpass("Password: ")
        if first != getpass("Password (again): "):
            raise CommandError("The two passwords differ; nothing was created.")
        return first
