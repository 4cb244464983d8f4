"""The scoring app's panel on the customer's admin page (customers.admin_panels): the products
recommended to the customer, from the latest recommendation run, with why each is there."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from customers.admin_panels import CustomerPanel, customer_panel_register
from customers.models import Customer
from scoring.selectors import customer_recommendation_rows


def _price(value: object) -> str:
    return "—" if value is None else f"{value:,.2f} {settings.RETENTION_CURRENCY}"


def recommendations_panel(customer: Customer) -> SafeString:
    """A table of the customer's recommended products (rank, product, category, price, why)
    and the run they come from; a sentence when there is none."""
    run, rows = customer_recommendation_rows(customer=customer)
    if run is None:
        return format_html(
            "<em>{}</em>",
            "No recommendations yet: they are computed from order lines (retention_cycle's "
            "recommendations stage, or manage.py recommend_products).",
        )
    if not rows:
        return format_html("<em>{}</em>", "No product on sale to recommend.")
    body = format_html_join(
        "",
        "<tr><td>{}</td><td>{} <small>({})</small></td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (rank, p.name or p.external_id, p.external_id, p.category or "—", _price(p.price), why)
            for rank, (p, why) in enumerate(rows, start=1)
        ),
    )
    return format_html(
        "<table><thead><tr><th>#</th><th>product</th><th>category</th><th>price</th>"
        "<th>why</th></tr></thead><tbody>{}</tbody></table>"
        '<p class="help">From the recommendation run of {} ({}, {} customers with a history); '
        'messages show the first {}. <a href="{}">All runs…</a></p>',
        body,
        f"{run.created_at:%Y-%m-%d %H:%M} UTC",
        run.version,
        f"{run.customers:,}",
        settings.RECOMMENDATIONS_PER_MESSAGE,
        reverse("admin:scoring_recommendationrun_changelist"),
    )


def register() -> None:
    customer_panel_register(
        CustomerPanel("recommendations", "Recommended products", recommendations_panel)
    )
