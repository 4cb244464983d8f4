"""Factories and fixtures for campaign tests: scored customers in bulk, offers, templates,
campaigns, rules, a dispatched-and-sent campaign, and a check of what a module imports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from campaigns.models import Campaign, CampaignStatus, Intervention, MessageTemplate, Offer, Rule
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from customers.models import Consent, Customer
from tests.campaigns.servers import SmtpRecorder, smtp_server

REPO = Path(__file__).resolve().parents[2]
# Noon UTC: outside the default quiet hours (21-8) for UTC customers.
NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def make_customers(count: int, *, start: int = 0, **fields: Any) -> list[Customer]:
    """`count` scored customers with email and phone; fields override the defaults."""
    rows = []
    for i in range(start, start + count):
        values: dict[str, Any] = {
            "external_id": f"c{i:06d}",
            "name": f"Customer {i}",
            "email": f"c{i}@example.com",
            "phone": f"+1555{i:07d}",
            "churn_probability": 0.8,
            "risk_tier": "critical",
            "score_model_version": "m1",
            "time_zone": "UTC",
        }
        values.update(fields)
        rows.append(Customer(**values))
    Customer.objects.bulk_create(rows, batch_size=2000)
    return list(Customer.objects.filter(external_id__in=[r.external_id for r in rows]))


def make_offer(**fields: Any) -> Offer:
    values: dict[str, Any] = {
        "name": "15% off",
        "kind": "percent_coupon",
        "value": Decimal("15"),
        "validity_days": 30,
        "unit_cost": Decimal("5"),
    }
    values.update(fields)
    return Offer.objects.create(**values)


def make_template(channel: str = "email", **fields: Any) -> MessageTemplate:
    values: dict[str, Any] = {
        "name": f"{channel} template",
        "channel": channel,
        "subject": "{{ first_name }}, {{ offer.description }} for you",
        "body": "Hi {{ first_name }}, use {{ coupon_code }} before {{ coupon_expires }}.",
    }
    values.update(fields)
    return MessageTemplate.objects.create(**values)


def make_campaign(*, rules: list[dict[str, Any]] | None = None, **fields: Any) -> Campaign:
    values: dict[str, Any] = {
        "name": "Win-back",
        "status": CampaignStatus.ACTIVE,
        "control_percentage": Decimal("10"),
        "salt": "fixed-salt",
        "cooldown_days": 14,
    }
    values.update(fields)
    campaign = Campaign.objects.create(**values)
    for position, rule in enumerate(rules or [], start=1):
        Rule.objects.create(campaign=campaign, position=position, **rule)
    return campaign


def point_email_at(settings: Any, port: int) -> None:
    """Django's SMTP backend, plain and without a login, at the local SMTP server on `port`."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""


@pytest.fixture
def smtp(settings: Any) -> Iterator[SmtpRecorder]:
    """A real SMTP server on a free local port, and the email settings pointing at it."""
    with smtp_server() as (recorder, port):
        point_email_at(settings, port)
        yield recorder


@pytest.fixture(autouse=True)
def _no_global_control(settings: Any) -> None:
    """Tests count arms exactly, so the program-wide holdout is off unless a test sets it
    (tests/campaigns/test_global_control.py does)."""
    settings.GLOBAL_CONTROL_PERCENT = 0


@pytest.fixture
def email_rule(db: None) -> dict[str, Any]:
    return {
        "name": "critical by email",
        "tiers": ["critical"],
        "channel": "email",
        "offer": make_offer(),
        "template": make_template("email"),
    }


def mixed_population() -> None:
    """Customers that exercise every rule branch and suppression reason."""
    make_customers(300)
    make_customers(40, start=1000, erased=True)
    make_customers(40, start=2000, email="")
    make_customers(40, start=3000, risk_tier="high", churn_probability=0.6)
    make_customers(40, start=4000, risk_tier="low", churn_probability=0.1)  # matches no rule
    # 21:00 local at NOON: quiet hours; riskiest, so first in line for the budget.
    make_customers(40, start=5000, time_zone="Asia/Tokyo", churn_probability=0.9)
    revoked = Customer.objects.filter(external_id__startswith="c0000")[:25]
    Consent.objects.bulk_create(
        [
            Consent(customer=c, channel="email", status="revoked", recorded_at=NOON, source="t")
            for c in revoked
        ]
    )


@pytest.fixture
def sent_campaign(settings: Any, email_rule: dict[str, Any]) -> Campaign:
    """30 customers, 30% control, dispatched at NOON and the treated ones' emails sent."""
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    make_customers(30)
    campaign = make_campaign(rules=[email_rule], control_percentage=Decimal("30"))
    campaign_dispatch(campaign=campaign, now=NOON)
    interventions_relay(now=NOON)
    return campaign


def interventions_of(campaign: Campaign, arm: str) -> list[Intervention]:
    return list(
        Intervention.objects.filter(campaign=campaign, arm=arm)
        .select_related("customer")
        .order_by("pk")
    )


def modules_loaded_by(module: str) -> set[str]:
    """Top-level packages a fresh interpreter has loaded after importing `module` alone."""
    code = f"import sys, {module}; print(' '.join({{m.split('.')[0] for m in sys.modules}}))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    return set(result.stdout.split())
