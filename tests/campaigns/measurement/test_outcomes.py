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
