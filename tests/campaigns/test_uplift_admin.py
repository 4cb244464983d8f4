"""The admin's uplift pages: the report with its charts, recompute, the streamed CSV of the
assignment log with outcomes, the program report and the holdout planner on the form."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from campaigns.models import Campaign, Intervention, UpliftReport
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from customers.models import Order
from tests.campaigns.conftest import NOON, make_campaign, make_customers

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db: None) -> Client:
    User.objects.create_superuser("boss", password="pw-123456789")
    client = Client()
    client.login(username="boss", password="pw-123456789")
    return client


@pytest.fixture
def campaign(settings: Any, email_rule: dict[str, Any]) -> Campaign:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    customers = make_customers(60)
    campaign = make_campaign(rules=[email_rule], control_percentage=Decimal("30"))
    campaign_dispatch(campaign=campaign, now=NOON)
    interventions_relay(now=NOON)
    for index, customer in enumerate(customers[:25]):
        Order.objects.create(
            external_id=f"o{index}",
            customer=customer,
            placed_at=NOON + timedelta(days=1 + index % 20),
            amount=Decimal("20") + index,
        )
    return campaign


def test_the_report_page_draws_its_charts_and_recomputes(staff: Client, campaign: Campaign) -> None:
    url = f"/admin/campaigns/campaign/{campaign.pk}/uplift/"
    page = staff.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    for chart in ("lift", "curve", "revenue"):
        assert f'data-chart="{chart}"' in html
    assert html.count('class="point"') > 30  # curve points, lift points
    assert "https://" not in html.split('id="uplift-report"')[1]  # nothing from a CDN
    assert UpliftReport.objects.filter(kind="campaign").count() == 1
    assert staff.post(url).status_code == 302
    assert UpliftReport.objects.filter(kind="campaign").count() == 1  # same day: updated


def test_the_csv_export_streams_every_intervention_with_its_outcome(
    staff: Client, campaign: Campaign
) -> None:
    from campaigns import measurement

    response = staff.get(f"/admin/campaigns/campaign/{campaign.pk}/uplift/assignments.csv")
    assert response.status_code == 200 and response.streaming
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == Intervention.objects.filter(campaign=campaign).count() == 60
    assert sum(int(r["retained"]) for r in rows) == 25
    assert {r["arm"] for r in rows} == {"treatment", "control"}
    # Chunked: a tiny chunk gives the same rows.
    chunks = list(measurement.interventions_outcomes_csv(campaign=campaign, chunk=7))
    assert len(chunks) == 1 + 9
    assert "".join(chunks) == text


def test_the_program_report_and_the_planner(staff: Client, campaign: Campaign) -> None:
    page = staff.get("/admin/campaigns/campaign/program-uplift/")
    assert page.status_code == 200 and "global control" in page.content.decode().lower()
    form = staff.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert "holdout-planner" in form and "smallest difference" in form
    assert 'class="mde"' in form
