"""manage.py recommend_products: refresh every customer's product recommendations from the
order lines (the default method: what they bought before, then what is bought together with it,
then what is popular now). Messages show them as `recommended_products`."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from scoring.ml.recommend import DEFAULT_METHOD, METHODS
from scoring.services.recommendations import STORED_PER_CUSTOMER, recommendations_refresh


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD)
        parser.add_argument(
            "--per-customer",
            type=int,
            default=STORED_PER_CUSTOMER,
            help=f"Products stored per customer (default {STORED_PER_CUSTOMER})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        run = recommendations_refresh(
            method=options["method"], per_customer=options["per_customer"], say=self.stdout.write
        )
        if run is None:
            self.stdout.write("No order lines yet (import a line-level orders file): nothing done.")
            return
        self.stdout.write(
            f"Recommendations {run.version}: {run.customers:,} customers with a history, "
            f"{run.products:,} products on sale, from {run.lines:,} order lines "
            f"in {run.seconds:.1f} s. "
            f"Others get the {len(run.fallback_product_ids)} most bought of the last weeks."
        )
