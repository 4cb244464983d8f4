"""The CSV export of the assignment log: one row per intervention of both arms, in id order,
the same text whatever the chunk size."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from campaigns.measurement.export import CSV_HEADER, interventions_outcomes_csv
from campaigns.models import Intervention
from campaigns.services.dispatch import campaign_dispatch
from customers.models import Customer, Order
from tests.campaigns.conftest import NOON, make_campaign, make_customers

pytestmark = pytest.mark.django_db


def test_the_export_is_the_same_in_any_chunk_size(
    settings: Any, email_rule: dict[str, Any]
) -> None:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    customers = make_customers(23)
    campaign = make_campaign(rules=[email_rule], control_percentage=Decimal("30"))
    campaign_dispatch(campaign=campaign, now=NOON)
    Order.objects.create(
        external_id="o1",
        customer=customers[4],
        placed_at=NOON + timedelta(days=3),
        amount=Decimal("19.999"),
    )
    whole = list(interventions_outcomes_csv(campaign=campaign))
    assert len(whole) == 2  # the header, then one chunk
    chunked = list(interventions_outcomes_csv(campaign=campaign, chunk=5))
    assert len(chunked) == 1 + 5 and "".join(chunked) == "".join(whole)
    rows = list(csv.DictReader(io.StringIO("".join(whole))))
    assert list(rows[0]) == CSV_HEADER
    ids = list(
        Intervention.objects.filter(campaign=campaign).order_by("pk").values_list("pk", flat=True)
    )
    assert [int(r["intervention_id"]) for r in rows] == ids
    [ordered] = [r for r in rows if r["orders"] == "1"]
    assert (ordered["customer"], ordered["retained"], ordered["revenue"]) == (
        "c000004",
        "1",
        "20.0",
    )
    assert ordered["first_order_day"] == "3.0" and ordered["assigned_at"].startswith("2026-11-24")


def test_text_cells_cannot_run_as_spreadsheet_formulas(
    settings: Any, email_rule: dict[str, Any]
) -> None:
    """OWASP CSV injection: an external id or rule name starting with = + - @ is quoted."""
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    make_customers(3)
    Customer.objects.filter(external_id="c000000").update(
        external_id='=HYPERLINK("http://evil.example","x")'
    )
    Customer.objects.filter(external_id="c000001").update(external_id="@SUM(A1)")
    email_rule["name"] = "+cmd|' /C calc'!A0"
    campaign = make_campaign(rules=[email_rule], control_percentage=Decimal("0"))
    campaign_dispatch(campaign=campaign, now=NOON)
    rows = list(csv.DictReader(io.StringIO("".join(interventions_outcomes_csv(campaign=campaign)))))
    assert {r["customer"] for r in rows} == {
        '\'=HYPERLINK("http://evil.example","x")',
        "'@SUM(A1)",
        "c000002",
    }
    assert {r["rule"] for r in rows} == {"'+cmd|' /C calc'!A0"}
