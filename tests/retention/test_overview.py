"""The admin's landing page (retention/overview.py): its figures come from the database as a
person would count them by hand, and each section shows only to a role that may open it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from campaigns.measurement.snapshots import uplift_report_compute
from campaigns.services.dispatch import campaign_dispatch
from customers.models import Customer
from scoring.models import ChurnModel, CustomerScore, ModelStatus, RunStatus, ScoringRun
from scoring.selectors import score_histogram
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer

pytestmark = pytest.mark.django_db

PROBABILITIES = [0.02, 0.04, 0.31, 0.5, 0.55, 0.97, 1.0, 0.049, 0.051]


def scored_run(probabilities: list[float]) -> ScoringRun:
    customers = make_customers(len(probabilities), risk_tier="low")
    model = ChurnModel.objects.create(
        version="m-overview",
        status=ModelStatus.ACTIVE,
        candidate="lr_balanced",
        algorithm="logistic",
        sampler="none",
        threshold=0.5,
        training_rows=1234,
        positive_rate=0.25,
        metrics={"roc_auc": 0.812, "pr_auc": 0.533, "brier": 0.141},
        artifact_path="/nowhere/m.skops",
        activated_at=timezone.now(),
        label_definition={"kind": "behaviour", "horizon_days": 90},
    )
    now = timezone.now()
    run = ScoringRun.objects.create(
        run_key="nightly-test",
        model=model,
        as_of=now,
        status=RunStatus.COMPLETED,
        customers_total=len(customers),
        customers_scored=len(customers),
        tier_counts={"low": 5, "critical": 3, "high": 1},
        drift={"status": "alert"},
        finished_at=now + timedelta(seconds=42),
    )
    CustomerScore.objects.bulk_create(
        CustomerScore(run=run, customer=c, probability=p, tier="low", scored_at=now)
        for c, p in zip(customers, probabilities, strict=True)
    )
    return run


def test_the_histogram_counts_each_band_like_a_hand_count() -> None:
    run = scored_run(PROBABILITIES)
    counts = score_histogram(run=run, bins=20)
    by_hand = [0] * 20
    for p in PROBABILITIES:
        by_hand[min(int(p * 20), 19)] += 1
    assert counts == by_hand and sum(counts) == len(PROBABILITIES)


def test_staff_land_on_the_overview_with_every_section() -> None:
    run = scored_run(PROBABILITIES)
    campaign = make_campaign(
        control_percentage=Decimal("30"),
        rules=[{"name": "all", "tiers": ["low"], "channel": "coupon", "offer": make_offer()}],
    )
    campaign_dispatch(campaign=campaign, now=NOON)
    uplift_report_compute(campaign=campaign)
    User.objects.create_superuser("boss", password="pw-overview-1")
    client = Client()
    client.force_login(User.objects.get(username="boss"))
    page = client.get("/admin/").content.decode()
    assert 'id="overview"' in page and 'data-chart="score-histogram"' in page
    assert run.run_key in page and "m-overview" in page and "0.812" in page
    # Tiers by severity (highest band first), with their share of the run.
    tiers = page[page.index('id="tier-sizes"') :]
    assert tiers.index("Critical") < tiers.index("High") < tiers.index("Low")
    assert "55.6%" in tiers  # 5 of 9 low
    assert "retrain the model" in page  # the drift alert says what to do
    assert "Win-back" in page and f"/admin/campaigns/campaign/{campaign.pk}/uplift/" in page
    assert "42.0 s" in page  # the scoring stage's time
    assert "Customers" in page  # the app list stays reachable


def test_a_role_sees_only_the_sections_it_may_open() -> None:
    scored_run(PROBABILITIES)
    make_campaign(rules=[])
    user = User.objects.create_user("reader", password="pw-overview-2", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="view_campaign", content_type__app_label="campaigns")
    )
    client = Client()
    client.force_login(user)
    response = client.get("/admin/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="overview-campaigns"' in page
    assert 'id="overview-scores"' not in page and 'id="overview-model"' not in page
    assert "/admin/scoring/" not in page  # no link this user could not follow


def test_an_empty_database_says_what_to_do(db: None) -> None:
    User.objects.create_superuser("boss", password="pw-overview-3")
    client = Client()
    client.force_login(User.objects.get(username="boss"))
    page = client.get("/admin/").content.decode()
    assert "No scoring run has finished yet" in page and "No campaign is active" in page


def test_the_overview_needs_a_staff_login(client: Any) -> None:
    response = client.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_the_customer_page_shows_the_score_in_words(db: None) -> None:
    User.objects.create_superuser("boss", password="pw-overview-4")
    client = Client()
    client.force_login(User.objects.get(username="boss"))
    scored, unscorable = make_customers(2, risk_tier="critical", churn_probability=0.734)
    Customer.objects.filter(pk=unscorable.pk).update(
        risk_tier="not_scorable", churn_probability=None
    )
    page = client.get(f"/admin/customers/customer/{scored.pk}/change/").content.decode()
    assert "73.4%" in page and "Critical" in page
    other = client.get(f"/admin/customers/customer/{unscorable.pk}/change/").content.decode()
    assert "Not scorable (no order before the scoring date)" in other
    listing = client.get("/admin/customers/customer/").content.decode()
    assert "73.4%" in listing and ">not_scorable<" not in listing  # the filter reads in words
    assert ">Not scorable<" in listing
