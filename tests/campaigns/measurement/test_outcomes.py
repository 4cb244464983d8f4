"""The SQL of measurement: the cells of the analysis population (sizes, costs, orders in the
window, converted responses), the curve rows, the per-intervention outcomes and the program's
two groups — checked against the rows they come from."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from campaigns.measurement.outcomes import (
    ANALYSIS_POPULATION,
    CELL_COLUMNS,
    campaign_outcome_cells,
    intervention_outcomes,
    program_outcome_groups,
)
from campaigns.models import Campaign, Intervention
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from campaigns.services.responses import response_record
from customers.models import Order
from tests.campaigns.conftest import NOON, make_campaign, make_customers

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(settings: Any, email_rule: dict[str, Any]) -> Campaign:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    make_customers(30)
    make_customers(10, start=100, email="")  # no address: suppressed at dispatch, left out
    campaign = make_campaign(rules=[email_rule], control_percentage=Decimal("30"))
    campaign_dispatch(campaign=campaign, now=NOON)
    interventions_relay(now=NOON)
    return campaign


def analysed(campaign: Campaign, arm: str) -> list[Intervention]:
    rows = Intervention.objects.filter(ANALYSIS_POPULATION, campaign=campaign, arm=arm)
    return list(rows.order_by("pk"))


def test_cells_count_the_analysis_population_and_its_orders_in_the_window(
    campaign: Campaign,
) -> None:
    treated, control = analysed(campaign, "treatment"), analysed(campaign, "control")
    for index, (i, day) in enumerate([(treated[0], 2), (treated[0], 5), (control[0], 40)]):
        Order.objects.create(
            external_id=f"o{index}",
            customer_id=i.customer_id,
            placed_at=NOON + timedelta(days=day),
            amount=Decimal("10.50"),
        )
    response_record(
        intervention=treated[1],
        kind="converted",
        occurred_at=NOON + timedelta(days=1),
        idempotency_key="conv",
    )
    frame = campaign_outcome_cells(campaign=campaign)
    assert list(frame.columns) == CELL_COLUMNS
    cells = frame.loc[frame["part"].eq("cell")].set_index("arm")
    assert cells.loc["treatment", "n"] == len(treated) and cells.loc["control", "n"] == len(control)
    assert len(treated) + len(control) == 30  # the ten without an address are not cells
    t = cells.loc["treatment"]
    assert (t["retained"], t["orders"], t["revenue"], t["revenue_sq"]) == (1, 2, 21.0, 441.0)
    assert (t["converted_response"], t["retained_or_converted"]) == (1, 2)
    assert t["contacted"] == len(treated) and cells.loc["control", "contacted"] == 0
    assert cells.loc["control", "retained"] == 0  # day 40 is after the 30-day window
    assert t["window_days"] == 30 and t["last_assigned"] == NOON
    curve = frame.loc[frame["part"].eq("curve")]
    assert curve[["arm", "day", "n"]].to_dict("records") == [
        {"arm": "treatment", "day": 2.0, "n": 1.0}
    ]


def test_the_outcome_of_each_intervention(campaign: Campaign) -> None:
    [first, *_rest] = analysed(campaign, "treatment")
    Order.objects.create(
        external_id="o1",
        customer_id=first.customer_id,
        placed_at=NOON + timedelta(hours=36),
        amount=Decimal("12.25"),
    )
    ids = list(
        Intervention.objects.filter(campaign=campaign).order_by("pk").values_list("pk", flat=True)
    )
    rows = intervention_outcomes(campaign=campaign, after_id=0, up_to_id=ids[-1])
    assert rows["intervention_id"].tolist() == ids
    row = rows.set_index("intervention_id").loc[first.pk]
    assert (row["orders"], row["revenue"], row["first_day"]) == (1, 12.25, 1.5)
    assert row["in_analysis"] == 1 and row["rule_name"] == "critical by email"
    suppressed = rows.loc[rows["status"].eq("suppressed")]
    assert len(suppressed) == 10 and set(suppressed["in_analysis"]) == {0}
    assert intervention_outcomes(campaign=campaign, after_id=ids[-1], up_to_id=ids[-1]).empty


def test_the_program_groups_count_each_customer_once(
    settings: Any, email_rule: dict[str, Any]
) -> None:
    settings.GLOBAL_CONTROL_PERCENT = 25
    make_customers(80)
    campaign_dispatch(campaign=make_campaign(rules=[email_rule]), now=NOON)
    groups = program_outcome_groups().set_index("global_control")
    members = Intervention.objects.filter(reason="global_control").count()
    assert groups.loc[1, "n"] == members and groups.loc[0, "n"] == 80 - members
    assert groups.loc[0, "retained"] == 0 and groups.loc[0, "last"] == NOON
    assert program_outcome_groups(since=NOON + timedelta(days=1)).empty


def test_an_order_at_the_moment_of_assignment_counts_and_one_just_before_does_not(
    campaign: Campaign,
) -> None:
    """The joins of orders read only orders since the earliest assignment measured (a bound the
    window implies: `_not_before`): the window's edges are unchanged by it."""
    [first, second, *_rest] = analysed(campaign, "treatment")
    for n, (i, at) in enumerate([(first, NOON), (second, NOON - timedelta(seconds=1))]):
        Order.objects.create(
            external_id=f"edge{n}", customer_id=i.customer_id, placed_at=at, amount=Decimal("5")
        )
    cells = campaign_outcome_cells(campaign=campaign)
    treated = cells.loc[cells["part"].eq("cell")].set_index("arm").loc["treatment"]
    assert (treated["retained"], treated["orders"], treated["revenue"]) == (1, 1, 5.0)
    groups = program_outcome_groups().set_index("global_control")
    assert groups["retained"].sum() == 1 and groups["revenue"].sum() == 5.0


def test_the_orders_joins_read_only_orders_since_the_first_assignment(
    require_postgres: None, campaign: Campaign
) -> None:
    """With the earliest assignment as a bound, PostgreSQL reads the recent orders through the
    BRIN index on placed_at (customers.0013) instead of the whole order history: at 10M orders
    the program report's query went from 9.7 to 0.95 s. Without the bound, or the index, the
    plan reads every order (a sequential scan, or every entry of the covering index)."""
    from django.db import connection

    from campaigns.measurement.outcomes import _order_cells_sql, _program_sql

    customers = list(Intervention.objects.values_list("customer_id", flat=True))
    start = NOON - timedelta(days=700)
    Order.objects.bulk_create(  # two years of history before the campaign, in time order
        Order(
            external_id=f"h{n}",
            customer_id=customers[n % len(customers)],
            placed_at=start + timedelta(minutes=30 * n),
            amount=Decimal("20"),
        )
        for n in range(30_000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE customers_order")
        # A campaign of 30 customers is best served by 30 probes of the covering index; the
        # question here is how the whole table is read when there are too many customers to
        # probe one by one (188,000 in the cycle bench), so this transaction has no nested loop.
        cursor.execute("SET LOCAL enable_nestloop = off")
        for sql, params in [
            (_program_sql("1 = 1"), [NOON]),
            (_order_cells_sql("i.campaign_id = %s"), [campaign.pk, NOON]),
        ]:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            reads = [
                (node["Node Type"], node.get("Index Name"))
                for node in _plan_nodes(cursor.fetchone()[0][0]["Plan"])
                if node.get("Relation Name") == "customers_order"
                or str(node.get("Index Name", "")).startswith("order_")
            ]
            assert ("Bitmap Index Scan", "order_placed_brin") in reads, reads
            assert ("Seq Scan", None) not in reads, reads


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in _plan_nodes(child))]
