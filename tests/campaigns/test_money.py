"""One definition of a campaign's cost (campaigns.uplift.costs): the summary, the uplift
report, the API and the CSV export give the same figure, in RETENTION_CURRENCY."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.test import Client
from rest_framework.test import APIClient

from campaigns import selectors
from campaigns.measurement.snapshots import uplift_report_compute
from campaigns.models import Campaign, Coupon, Intervention
from campaigns.money import money
from campaigns.services.coupons import coupon_redeem
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from campaigns.uplift.report import CampaignUpliftReport
from customers.models import Consent
from customers.services import api_client_create
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer, make_template

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(settings: Any) -> Campaign:
    """Email with a 15% coupon (three redeemed on 80.00 orders) and SMS with loyalty points
    (no coupon: each offer made costs its unit cost), both sent."""
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SMS_BACKEND = "console"
    settings.RETENTION_CURRENCY = "GBP"
    settings.CAMPAIGN_MESSAGE_COST = {"email": 0.002, "sms": 0.05, "coupon": 0, "callback": 2.5}
    make_customers(20)
    texted = make_customers(20, start=100, risk_tier="high", churn_probability=0.6)
    Consent.objects.bulk_create(  # SMS needs an opt-in (no consent by default)
        Consent(customer=c, channel="sms", status="granted", recorded_at=NOON, source="t")
        for c in texted
    )
    points = make_offer(name="Points", kind="loyalty_points", value="500", unit_cost="1.25")
    campaign = make_campaign(
        control_percentage=Decimal("20"),
        rules=[
            {"name": "critical", "tiers": ["critical"], "channel": "email",
             "offer": make_offer(), "template": make_template("email")},
            {"name": "high", "tiers": ["high"], "channel": "sms", "offer": points,
             "template": make_template("sms", subject="", body="{{ first_name }}: 500 points")},
        ],
    )  # fmt: skip
    campaign_dispatch(campaign=campaign, now=NOON)
    interventions_relay(now=NOON)
    for index, coupon in enumerate(Coupon.objects.order_by("pk")[:3]):
        coupon_redeem(
            code=coupon.code,
            order_external_id=f"o{index}",
            amount=Decimal("80.00"),
            redeemed_at=NOON + timedelta(days=1),
        )
    return campaign


def _expected(campaign: Campaign) -> float:
    sent = Intervention.objects.filter(campaign=campaign, arm="treatment", status="sent")
    emails = sent.filter(channel="email").count()
    sms = sent.filter(channel="sms").count()
    assert emails > 10 and sms > 10  # both channels really sent
    return round(3 * 12.00 + sms * 1.25 + emails * 0.002 + sms * 0.05, 2)


def test_summary_report_api_and_csv_give_the_same_cost(campaign: Campaign) -> None:
    expected = _expected(campaign)

    summary = selectors.campaign_summary(campaign=campaign)
    assert summary["cost"].total == expected

    stored = uplift_report_compute(campaign=campaign, now=NOON + timedelta(days=2))
    report = CampaignUpliftReport.from_json(stored.figures)
    assert report.overall is not None and report.overall.cost.total == expected

    _client, key = api_client_create(name="reports", scopes=["reports:read"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    body = api.get(f"/api/v1/campaigns/{campaign.pk}/uplift").json()
    assert body["overall"]["cost"]["total"] == expected
    assert body["currency"] == "GBP"
    assert body["cost_basis"].startswith("cost = offers + messages")

    staff = Client()
    User.objects.create_superuser("boss", password="pw-123456789")
    staff.login(request=HttpRequest(), username="boss", password="pw-123456789")
    csv_url = f"/admin/campaigns/campaign/{campaign.pk}/uplift/assignments.csv"
    text = b"".join(staff.get(csv_url).streaming_content).decode()
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r["in_analysis"] == "1"]
    assert round(sum(float(r["cost"]) for r in rows), 2) == expected
    assert {r["currency"] for r in rows} == {"GBP"}

    shown = money(expected)
    assert shown.startswith("£")
    page = staff.get(f"/admin/campaigns/campaign/{campaign.pk}/summary/").content.decode()
    assert f"<strong>{shown}</strong>" in page
    uplift = staff.get(f"/admin/campaigns/campaign/{campaign.pk}/uplift/").content.decode()
    assert f'<strong id="cost">{shown}</strong>' in uplift
    assert "ROI = (incremental revenue − cost) / cost, where cost = offers + messages" in uplift


def test_the_preview_shows_expected_costs_in_the_currency(settings: Any) -> None:
    settings.RETENTION_CURRENCY = "GBP"
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    make_customers(10)
    campaign = make_campaign(
        control_percentage=Decimal("0"),
        rules=[{"name": "critical", "tiers": ["critical"], "channel": "email",
                "offer": make_offer(), "template": make_template("email")}],
    )  # fmt: skip
    User.objects.create_superuser("boss", password="pw-123456789")
    staff = Client()
    staff.login(request=HttpRequest(), username="boss", password="pw-123456789")
    page = staff.get(f"/admin/campaigns/campaign/{campaign.pk}/preview/").content.decode()
    assert '<td class="offer-cost">£50.00</td>' in page  # 10 offers × £5.00 unit cost
    assert '<td class="message-cost">£0.02</td>' in page  # 10 emails × £0.002
    assert "Once sent, the campaign's cost counts only the coupons actually redeemed" in page


@pytest.mark.parametrize(
    ("currency", "amount", "text"),
    [("EUR", 1234.5, "€1,234.50"), ("GBP", -3.456, "-£3.46"), ("JPY", 1234, "JP¥1,234"),
     ("EUR", None, "—"), ("EUR", "n/a", "—")],
)  # fmt: skip
def test_money_shows_the_currency(settings: Any, currency: str, amount: Any, text: str) -> None:
    settings.RETENTION_CURRENCY = currency
    assert money(amount) == text
