from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.privacy import customer_for_privacy_request
from customers.services import customer_erase


class Command(BaseCommand):
    help = (
        "Erase one customer's personal data (name, email, phone, attributes, event properties, "
        "free text in campaign rows), revoke every consent and replace the external id by a "
        "pseudonym; orders, interventions and responses stay, so uplift reports are unchanged."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("external_id", help="The customer's id in the client's CRM")

    def handle(self, *args: Any, **options: Any) -> None:
        external_id = options["external_id"]
        customer = customer_for_privacy_request(external_id=external_id)
        if customer is None:
            raise CommandError(f"no customer with external id '{external_id}'")
        erasure = customer_erase(customer=customer, requested_by="manage.py erase_customer")
        pseudonym = erasure.customer.external_id
        if erasure.already_erased:
            self.stdout.write(f"Customer {external_id} was already erased (now {pseudonym}).")
            return
        self.stdout.write(
            f"Customer {external_id} erased: now {pseudonym}; every consent revoked; "
            "orders, interventions and responses kept."
        )
