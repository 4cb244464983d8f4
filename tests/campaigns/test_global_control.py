"""The global control group: a fixed share of all customers that no campaign ever contacts,
recorded so the program report can compare it with everyone else."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core import mail

from campaigns.measurement.snapshots import campaign_uplift, program_uplift
from campaigns.models import Intervention
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from campaigns.suppression import global_control_mask
from customers.models import Order
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_template

pytestmark = pytest.mark.django_db


def test_global_control_customers_are_never_contacted_by_any_campaign(
    settings: Any, email_rule: dict[str, Any]
) -> None:
    settings.GLOBAL_CONTROL_PERCENT = 20
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    customers = make_customers(200)
    first = make_campaign(rules=[email_rule], control_percentage=Decimal("10"))
    second = make_campaign(
        name="Second",
        salt="other",
        rules=[
            {
                "name": "all",
                "tiers": [],
                "channel": "email",
                "template": make_template("email", name="second"),
            }
        ],
    )
    for campaign in (first, second):
        campaign_dispatch(campaign=campaign, now=NOON)
    interventions_relay(now=NOON)
    ids = [c.pk for c in customers]
    expected = {
        cid
        for cid, g in zip(
            ids,
            global_control_mask(customer_ids=ids, salt=settings.GLOBAL_CONTROL_SALT, percentage=20),
            strict=True,
        )
        if g
    }
    assert 20 < len(expected) < 60
    rows = Intervention.objects.filter(reason="global_control")
    # Recorded in every campaign, in both arms' proportions, and never sent.
    assert {r.customer_id for r in rows.filter(campaign=first)} == expected
    assert {r.customer_id for r in rows.filter(campaign=second)} == expected
    assert set(rows.values_list("status", flat=True)) == {"suppressed"}
    contacted = {m.to[0] for m in mail.outbox}
    assert not contacted & {f"c{cid - ids[0]}@example.com" for cid in expected}
    assert len(mail.outbox) > 100

    # The campaign comparison leaves them out; the program report compares them.
    report = campaign_uplift(campaign=first, now=NOON)
    overall = report.overall
    assert overall is not None
    assert overall.treatment.n + overall.control.n == 200 - len(expected)
    assert sum(v for k, v in report.excluded.items() if "global_control" in k) == len(expected)
    members = sorted(expected)
    for cid in members[:10]:
        Order.objects.create(
            external_id=f"g{cid}", customer_id=cid, placed_at=NOON + timedelta(days=2), amount=10
        )
    program = program_uplift(now=NOON + timedelta(days=40))
    assert program.status == "final"
    assert program.overall is not None and program.overall.retention is not None
    assert program.overall.control.n == len(expected)
    assert program.overall.control.retained == 10
    assert program.overall.treatment.n == 200 - len(expected)
    assert program.overall.treatment.retained == 0
    assert program.overall.retention.difference == pytest.approx(-10 / len(expected))


def test_membership_depends_on_the_customer_alone() -> None:
    ids = list(range(1, 5001))
    once = global_control_mask(customer_ids=ids, salt="s", percentage=5)
    assert (once == global_control_mask(customer_ids=ids, salt="s", percentage=5)).all()
    assert 200 < once.sum() < 300
    assert not global_control_mask(customer_ids=ids, salt="s", percentage=0).any()
