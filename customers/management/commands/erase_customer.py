from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from customers.models import Customer
from customers.services import customer_erase, customer_pseudonym


class Command(BaseCommand):
    help = (
        "Erase one customer's personal data (name, email, phone, attributes), revoke every "
        "consent and replace the external id by a pseudonym; orders, interventions and "
        "responses stay, so uplift reports are unchanged."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("external_id", help="The customer's id in the client's CRM")

    def handle(self, *args: Any, **options: Any) -> None:
        external_id = options["external_id"]
        customer = Customer.objects.filter(external_id=external_id).first()
        if customer is None:
            pseudonym = customer_pseudonym(external_id=external_id)
            if Customer.objects.filter(external_id=pseudonym, erased=True).exists():
                self.stdout.write(f"Customer {external_id} was already erased (now {pseudonym}).")
                return
            raise CommandError(f"no customer with external id '{external_id}'")
        erased = customer_erase(customer=customer)
        self.stdout.write(
            f"Customer {external_id} erased: now {erased.external_id}; every consent revoked; "
            "orders, interventions and responses kept."
        )
