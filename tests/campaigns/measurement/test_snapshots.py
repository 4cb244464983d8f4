"""Measuring a campaign and its daily snapshots: both arms measured alike from orders inside the
attribution window, the report's figures equal a hand computation on a small fixture, a
reference effect attached to a cycle shows in the report, and the nightly refresh is safe twice."""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from campaigns.measurement.snapshots import (
    campaign_cycle_reference_attach,
    campaign_uplift,
    uplift_reports_refresh,
)
from campaigns.models import Campaign, CampaignCycle, Intervention, UpliftReport
from campaigns.services.coupons import coupon_redeem
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from campaigns.tasks import uplift_reports_nightly_task
from campaigns.uplift.report import ReferenceEffect
from customers.models import Order
from tests.campaigns.conftest import NOON, make_campaign, make_customers

pytestmark = pytest.mark.django_db

_orders = 0


def order(customer_id: int, *, days: float, amount: float, status: str = "completed") -> None:
    global _orders
    _orders += 1
    Order.objects.create(
        external_id=f"o{_orders}",
        customer_id=customer_id,
        placed_at=NOON + timedelta(days=days),
        amount=Decimal(str(amount)),
        status=status,
    )


@pytest.fixture
def campaign(settings: Any, email_rule: dict[str, Any]) -> Campaign:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CAMPAIGN_MESSAGE_COST = {"email": 0.5, "sms": 0.0, "coupon": 0.0, "callback": 0.0}
    make_customers(40)
    campaign = make_campaign(
        rules=[email_rule], control_percentage=Decimal("40"), attribution_window_days=30
    )
    campaign_dispatch(campaign=campaign, now=NOON)
    interventions_relay(now=NOON)
    return campaign


def arms(campaign: Campaign) -> tuple[list[int], list[int]]:
    rows = Intervention.objects.filter(campaign=campaign).order_by("customer_id")
    treated = [i.customer_id for i in rows if i.arm == "treatment"]
    control = [i.customer_id for i in rows if i.arm == "control"]
    assert len(treated) >= 15 and len(control) >= 8
    return treated, control


def test_control_customers_orders_count_towards_their_arm(campaign: Campaign) -> None:
    treated, control = arms(campaign)
    order(control[0], days=3, amount=50)
    order(control[1], days=4, amount=20)
    order(treated[0], days=5, amount=10)
    report = campaign_uplift(campaign=campaign, now=NOON + timedelta(days=40))
    overall = report.overall
    assert overall is not None
    assert overall.control.retained == 2 and overall.control.revenue == 70.0
    assert overall.treatment.retained == 1 and overall.treatment.revenue == 10.0
    assert overall.control.n == len(control) and overall.treatment.n == len(treated)
    assert report.status == "final"


def test_outcomes_respect_the_attribution_window(campaign: Campaign) -> None:
    treated, control = arms(campaign)
    order(treated[0], days=-1, amount=99)  # before assignment
    order(treated[1], days=30.01, amount=99)  # just after the 30-day window
    order(treated[2], days=12, amount=99, status="refunded")  # not a completed order
    order(control[0], days=31, amount=99)  # after the window
    report = campaign_uplift(campaign=campaign, now=NOON + timedelta(days=10))
    assert report.overall is not None
    assert report.overall.treatment.retained == 0 and report.overall.control.retained == 0
    assert report.status == "interim"  # the window is still open on day 10
    order(treated[3], days=29.99, amount=5)  # inside, at the edge
    later = campaign_uplift(campaign=campaign, now=NOON + timedelta(days=31))
    assert later.overall is not None
    assert later.overall.treatment.retained == 1
    assert later.overall.treatment.revenue == 5.0
    assert later.status == "final"


def wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_the_report_equals_a_hand_computation(campaign: Campaign) -> None:
    treated, control = arms(campaign)
    # Treated: 8 retained with known revenue; control: 2 retained.
    t_revenue = [40, 60, 25, 80, 10, 30, 55, 20]
    for customer, amount in zip(treated[:8], t_revenue, strict=True):
        order(customer, days=2, amount=amount)
    order(treated[0], days=9, amount=15)  # a second order of the same customer: revenue adds
    c_revenue = [30, 45]
    for customer, amount in zip(control[:2], c_revenue, strict=True):
        order(customer, days=6, amount=amount)
    # One treated customer redeems their coupon (15% of 60 = 9.00 is the offer cost).
    coupon = Intervention.objects.get(campaign=campaign, customer_id=treated[1]).coupon
    coupon_redeem(
        code=coupon.code,
        order_external_id="o-redeem",
        amount=Decimal("60"),
        redeemed_at=NOON + timedelta(days=2),
    )

    report = campaign_uplift(campaign=campaign, now=NOON + timedelta(days=45))
    o = report.overall
    assert o is not None and o.retention is not None and o.revenue is not None
    nt, nc = len(treated), len(control)
    pt, pc = 8 / nt, 2 / nc
    assert o.treatment.rate == pytest.approx(pt)
    assert o.control.rate == pytest.approx(pc)
    r = o.retention
    assert r.difference == pytest.approx(pt - pc)
    # Newcombe's hybrid score interval from the two Wilson intervals, by hand.
    lt, ut = wilson(8, nt)
    lc, uc = wilson(2, nc)
    assert r.ci_low == pytest.approx(pt - pc - math.sqrt((pt - lt) ** 2 + (uc - pc) ** 2))
    assert r.ci_high == pytest.approx(pt - pc + math.sqrt((ut - pt) ** 2 + (pc - lc) ** 2))
    assert r.relative_lift == pytest.approx(pt / pc - 1)
    assert r.test == "fisher_exact"  # small counts
    # Revenue per customer: Welch on per-customer revenue (0 for no order).
    per_t = np.zeros(nt)
    per_t[:8] = t_revenue
    per_t[0] += 15
    per_c = np.zeros(nc)
    per_c[:2] = c_revenue
    rev = o.revenue
    assert rev.treated_mean == pytest.approx(per_t.mean())
    assert rev.control_mean == pytest.approx(per_c.mean())
    se = math.sqrt(per_t.var(ddof=1) / nt + per_c.var(ddof=1) / nc)
    assert rev.standard_error == pytest.approx(se)
    # Incremental customers and revenue, cost and ROI.
    assert o.incremental_customers is not None and o.incremental_revenue is not None
    assert o.incremental_customers.estimate == pytest.approx((pt - pc) * nt)
    incremental = (per_t.mean() - per_c.mean()) * nt
    assert o.incremental_revenue.estimate == pytest.approx(incremental)
    messages = 0.5 * nt  # every treated customer was sent one email at 0.50
    assert o.cost.offers == pytest.approx(9.0)
    assert o.cost.messages == pytest.approx(messages)
    assert o.roi == pytest.approx((incremental - 9.0 - messages) / (9.0 + messages))
    # One rule, one tier, one channel: each breakdown has the overall figures.
    for groups in (report.by_rule, report.by_tier, report.by_channel, report.by_cycle):
        [group] = groups
        assert group.retention is not None
        assert group.retention.difference == pytest.approx(r.difference)
    assert report.by_tier[0].group == "critical"
    # Cumulative retention curve: by day 3 every treated order so far (8 customers) is in.
    curve = report.curve
    assert curve.days[-1] == 30
    assert curve.treatment[3] == pytest.approx(8 / nt)
    assert curve.control[3] == 0 and curve.control[7] == pytest.approx(2 / nc)
    assert curve.treatment[-1] == pytest.approx(pt)


def test_converted_responses_count_only_when_both_arms_have_them(campaign: Campaign) -> None:
    from campaigns.services.responses import response_record

    treated, control = arms(campaign)
    first = Intervention.objects.get(campaign=campaign, customer_id=treated[0])
    response_record(
        intervention=first,
        kind="converted",
        occurred_at=NOON + timedelta(days=1),
        idempotency_key="t-conv",
    )
    report = campaign_uplift(campaign=campaign, now=NOON + timedelta(days=45))
    assert report.conversion_source == "orders"
    assert report.overall is not None and report.overall.treatment.converted == 0
    other = Intervention.objects.get(campaign=campaign, customer_id=control[0])
    response_record(
        intervention=other,
        kind="converted",
        occurred_at=NOON + timedelta(days=1),
        idempotency_key="c-conv",
    )
    report = campaign_uplift(campaign=campaign, now=NOON + timedelta(days=45))
    assert report.conversion_source == "orders and converted responses"
    assert report.overall is not None
    assert report.overall.treatment.converted == 1 and report.overall.control.converted == 1


def test_a_campaign_without_interventions_reports_nothing_to_measure(
    email_rule: dict[str, Any],
) -> None:
    campaign = make_campaign(rules=[email_rule])
    report = campaign_uplift(campaign=campaign, now=NOON)
    assert report.status == "empty" and report.overall is None


def test_the_nightly_snapshot_runs_twice_without_doubling(campaign: Campaign) -> None:
    treated, _control = arms(campaign)
    order(treated[0], days=1, amount=10)
    now = NOON + timedelta(days=2)
    uplift_reports_nightly_task.delay(now=now.isoformat())
    uplift_reports_nightly_task.delay(now=now.isoformat())
    reports = UpliftReport.objects.filter(report_date=now.date())
    # campaign + its one cycle + the program report, each once
    assert sorted(reports.values_list("kind", flat=True)) == ["campaign", "cycle", "program"]
    report = reports.get(kind="campaign")
    assert report.status == "interim" and report.figures["overall"]["treatment"]["retained"] == 1
    # Once the cycle's snapshot is final, the nightly run leaves it alone.
    final_day = NOON + timedelta(days=31)
    uplift_reports_refresh(now=final_day)
    assert UpliftReport.objects.get(kind="cycle", report_date=final_day.date()).status == "final"
    uplift_reports_refresh(now=final_day + timedelta(days=1))
    assert not UpliftReport.objects.filter(
        kind="cycle", report_date=(final_day + timedelta(days=1)).date()
    ).exists()


def test_a_reference_effect_attached_to_a_cycle_shows_in_the_report(campaign: Campaign) -> None:
    """Whoever knows the true effect (the demo's simulator) attaches it to the cycle's summary;
    the report carries it, generically, beside its estimate."""
    reference = ReferenceEffect(
        label="effect known from a pilot",
        short_label="pilot",
        retention_effect=0.04,
        by_tier={"critical": 0.04},
        treated_n=20,
    )
    cycle = CampaignCycle.objects.get(campaign=campaign)
    campaign_cycle_reference_attach(cycle=cycle, effect=reference)
    cycle.refresh_from_db()
    assert cycle.summary["campaign"] == campaign.name  # the dispatch's summary is kept
    report = campaign_uplift(campaign=campaign, now=NOON + timedelta(days=40))
    assert report.reference_effect is not None
    assert report.reference_effect.label == "effect known from a pilot"
    assert report.reference_effect.retention_effect == pytest.approx(0.04)
    assert report.to_json()["reference_effect"]["by_tier"] == {"critical": 0.04}
