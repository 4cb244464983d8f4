"""retention_cycle's dispatch stage: seeds the demo campaign, dispatches, reports the counts."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from campaigns.models import Campaign
from customers.models import Customer
from tests.campaigns.conftest import make_customers

pytestmark = pytest.mark.django_db


def cycle_json(sources: Path) -> dict[str, Any]:
    out = StringIO()
    call_command(
        "retention_cycle", "--sources", str(sources), "--only", "dispatch", "--json", stdout=out
    )
    return json.loads(out.getvalue())


def test_the_dispatch_stage_reports_zero_eligible_before_scoring(tmp_path: Path) -> None:
    make_customers(5, churn_probability=None, risk_tier="")
    sources = Path(__file__).resolve().parents[2] / "demo" / "telco.json"
    data = cycle_json(sources)["dispatch"]
    [campaign] = data["campaigns"]
    assert campaign["campaign"] == "Win-back (demo)" and campaign["eligible"] == 0
    assert Campaign.objects.get().rules.count() == 2


def test_the_dispatch_stage_counts_rules_arms_channels_and_reasons(settings: Any) -> None:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    make_customers(200, risk_tier="critical")
    make_customers(100, start=1000, risk_tier="high", attributes={"Contract": "Month-to-month"})
    sources = Path(__file__).resolve().parents[2] / "demo" / "telco.json"
    data = cycle_json(sources)["dispatch"]
    [campaign] = data["campaigns"]
    assert campaign["eligible"] == 300
    assert campaign["treatment"] + campaign["control"] == 300
    assert campaign["sent"]["email"] == campaign["per_rule"][0]["treatment"]["taken"] > 150
    # The high tier gets its app coupon (no consent needed for a code the app shows).
    assert campaign["sent"]["coupon"] == campaign["per_rule"][1]["treatment"]["taken"] > 50
    assert campaign["suppressed"] == {}
    again = cycle_json(sources)["dispatch"]["campaigns"][0]
    assert again["already_ran"] and again["eligible"] == 300
    assert Customer.objects.count() == 300
