"""Recommendations from the shop's order lines into messages: the refresh stores each customer's
list (never an inactive product), customers without history get the popular list, and a
campaign email renders them by name, price and link."""

from __future__ import annotations

import csv
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command

from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from customers.line_import import import_order_lines
from customers.models import Customer, Product
from scoring.models import CustomerRecommendation, RecommendationRun
from scoring.selectors import customer_recommended_products
from scoring.services.recommendations import recommendations_refresh
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer, make_template

pytestmark = pytest.mark.django_db

HEADER = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
]
# Mugs and saucers go together; everyone bought a mug; "c3" bought only a teapot.
LINES = [
    ["1", "MUG", "Red mug", "1", "2011-01-03 10:00", "3.50", "c1"],
    ["1", "SAUCER", "Saucer", "1", "2011-01-03 10:00", "2.00", "c1"],
    ["2", "MUG", "Red mug", "2", "2011-01-04 10:00", "3.50", "c2"],
    ["2", "SAUCER", "Saucer", "1", "2011-01-04 10:00", "2.00", "c2"],
    ["3", "MUG", "Red mug", "1", "2011-01-05 10:00", "3.50", "c4"],
    ["4", "TEAPOT", "Teapot", "1", "2011-01-06 10:00", "20.00", "c3"],
    ["5", "OLD", "Discontinued jug", "1", "2011-01-06 10:00", "9.00", "c4"],
]


def load_shop(tmp_path: Path) -> None:
    path = tmp_path / "lines.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(LINES)
    import_order_lines(path=path, currency="GBP", create_customers=True)
    Product.objects.filter(external_id="OLD").update(active=False)


def names(customer: str) -> list[str]:
    pk = Customer.objects.get(external_id=customer).pk
    return [p.external_id for p in customer_recommended_products(customer_ids=[pk], limit=5)[pk]]


def test_the_refresh_stores_lists_without_inactive_products_and_falls_back_to_popular(
    tmp_path: Path,
) -> None:
    load_shop(tmp_path)
    run = recommendations_refresh()
    assert run is not None and run.customers == 4 and run.lines == 7
    assert CustomerRecommendation.objects.count() == 4
    # c4 bought a mug: its own mug first, then the saucer bought together with mugs.
    assert names("c4")[:2] == ["MUG", "SAUCER"]
    assert "OLD" not in {p for c in ("c1", "c2", "c3", "c4") for p in names(c)}
    # A customer with no lines gets the popular list, most bought first.
    newcomer = make_customers(1, start=900)[0]
    popular = customer_recommended_products(customer_ids=[newcomer.pk], limit=5)[newcomer.pk]
    assert [p.external_id for p in popular][:1] == ["MUG"]
    # A second refresh replaces the lists (one run kept).
    recommendations_refresh()
    assert RecommendationRun.objects.count() == 1 and CustomerRecommendation.objects.count() == 4


def test_no_lines_means_no_run_and_no_recommendations(db: None) -> None:
    customer = make_customers(1)[0]
    out = StringIO()
    call_command("recommend_products", stdout=out)
    assert "No order lines yet" in out.getvalue()
    assert customer_recommended_products(customer_ids=[customer.pk]) == {}


def test_a_campaign_email_shows_the_customers_recommended_products(
    tmp_path: Path, settings: Any
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.GLOBAL_CONTROL_PERCENT = 0
    settings.PRODUCT_URL_TEMPLATE = "https://shop.example/p/{external_id}"
    settings.RETENTION_CURRENCY = "GBP"
    load_shop(tmp_path)
    Customer.objects.update(
        churn_probability=0.9, risk_tier="critical", email="x@example.com", time_zone="UTC"
    )
    Customer.objects.filter(external_id="c4").update(email="c4@example.com")
    out = StringIO()
    call_command("recommend_products", stdout=out)
    assert "4 customers with a history" in out.getvalue()
    template = make_template(
        "email",
        body="{% for p in recommended_products %}{{ p.name }} {{ p.price }} {{ p.url }}\n"
        "{% endfor %}",
    )
    rule = {"name": "all", "channel": "email", "offer": make_offer(), "template": template}
    campaign_dispatch(campaign=make_campaign(rules=[rule], control_percentage=0), now=NOON)
    interventions_relay(now=NOON)
    [message] = [m for m in mail.outbox if m.to == ["c4@example.com"]]
    assert "Red mug £3.50 https://shop.example/p/MUG" in message.body
    assert "Saucer £2.00 https://shop.example/p/SAUCER" in message.body
    assert "Discontinued jug" not in message.body
