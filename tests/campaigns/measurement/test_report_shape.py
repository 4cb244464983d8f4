"""The stored snapshots, the API body and the CSV export keep their shape and their numbers:
a fixed fixture (four rules and tiers, two of them too small for every statistic, two cycles,
coupon redemptions, converted responses in both arms, a global control group) is measured and
compared with files written before the typed report replaced the nested dicts
(UPDATE_GOLDEN=1 rewrites them). One key changed on purpose since: the demo-only "simulation"
became the generic "reference_effect" (null here, as in every report outside the demo). Keys
added since are left out of the comparison (ADDED) and tested where they were added: the
comparison by targeting (tests/campaigns/uplift/test_report_by_targeting.py)."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns.measurement.export import interventions_outcomes_csv
from campaigns.measurement.snapshots import (
    program_uplift,
    uplift_report_compute,
    uplift_reports_refresh,
)
from campaigns.models import Campaign, CampaignCycle, Intervention, UpliftReport
from campaigns.services.coupons import coupon_redeem
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from campaigns.services.responses import response_record
from customers.models import Order
from customers.services import api_client_create
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer, make_template

pytestmark = pytest.mark.django_db
GOLDEN = Path(__file__).with_name("golden")
MEASURED = NOON + timedelta(days=20)  # the second cycle's windows are still open: interim
VOLATILE = {"measured_at", "seconds", "report_date"}
ADDED = {"by_targeting", "targeting"}


@pytest.fixture
def campaign(settings: Any) -> Campaign:
    if connection.vendor != "sqlite":
        pytest.skip(
            "the files were written on SQLite: the arms and the global control are hashes of "
            "customer ids, which another database's sequences number differently"
        )
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CAMPAIGN_MESSAGE_COST = {"email": 0.25, "sms": 0.0, "coupon": 0.1, "callback": 0.0}
    settings.GLOBAL_CONTROL_PERCENT = 10
    critical = make_customers(240, risk_tier="critical")
    high = make_customers(160, start=1000, risk_tier="high", churn_probability=0.6)
    make_customers(3, start=2000, risk_tier="medium", churn_probability=0.3)
    make_customers(1, start=3000, risk_tier="low", churn_probability=0.1)
    offer = make_offer()
    campaign = make_campaign(
        control_percentage=Decimal("30"),
        cooldown_days=0,
        rules=[
            {
                "name": "critical by email",
                "tiers": ["critical"],
                "channel": "email",
                "offer": offer,
                "template": make_template("email"),
            },
            {"name": "high by coupon", "tiers": ["high"], "channel": "coupon", "offer": offer},
            # Three customers: an arm too small for some statistics (a note instead).
            {"name": "medium by coupon", "tiers": ["medium"], "channel": "coupon", "offer": offer},
            {"name": "low by coupon", "tiers": ["low"], "channel": "coupon", "offer": offer},
        ],
    )
    for day in (0, 1):
        campaign_dispatch(campaign=campaign, now=NOON + timedelta(days=day))
        interventions_relay(now=NOON + timedelta(days=day))
    customers = critical + high
    Order.objects.bulk_create(
        Order(
            external_id=f"o{c.pk}-{k}",
            customer=c,
            placed_at=NOON + timedelta(days=1 + (c.pk * 7 + k) % 27, hours=5),
            amount=Decimal(15 + (c.pk * 13 + k) % 60),
        )
        for index, c in enumerate(customers)
        for k in range(1 + index % 2)
        if index % 3 == 0 or (index % 5 == 0 and c.risk_tier == "high")
    )
    rows = Intervention.objects.filter(campaign=campaign).order_by("pk")
    for arm in ("treatment", "control"):
        for i in rows.filter(arm=arm, status__in=["sent", "delivered", "held_out"])[:6]:
            response_record(
                intervention=i,
                kind="converted",
                occurred_at=i.created_at + timedelta(days=2),
                idempotency_key=f"conv-{i.pk}",
            )
    coupons = [i.coupon for i in rows.filter(arm="treatment", channel="coupon", status="sent")[:5]]
    for index, coupon in enumerate(coupons):
        coupon_redeem(
            code=coupon.code,
            order_external_id=f"redeem-{index}",
            amount=Decimal("40"),
            redeemed_at=NOON + timedelta(days=3),
        )
    return campaign


def _normalised(value: Any, cycles: dict[int, str], parent: str = "") -> Any:
    """Without the timings and dates of the run, ids as names (sequences differ by backend and
    run): the campaign's id as "campaign", a cycle's as "cycle-<position>"."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key in VOLATILE or key in ADDED:
                continue
            if key == "id" and parent == "campaign":
                item = "campaign"
            elif key == "id" and parent == "cycle":
                item = cycles[item]
            out[key] = _normalised(item, cycles, key)
        return out
    if isinstance(value, list):
        return [_normalised(item, cycles, parent) for item in value]
    return value


def _check(name: str, got: Any) -> None:
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(json.dumps(got, indent=1, sort_keys=False) + "\n")
    expected = json.loads(path.read_text())
    assert got == expected  # the very same floats
    # and the same types (1 and 1.0 are equal, but not the same JSON)
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


def _cycles() -> dict[int, str]:
    return {
        cycle.pk: f"cycle-{position}"
        for position, cycle in enumerate(CampaignCycle.objects.order_by("started_at"))
    }


def test_stored_snapshots_keep_their_json_shape_and_figures(campaign: Campaign) -> None:
    uplift_reports_refresh(now=MEASURED)
    cycles = _cycles()
    reports = UpliftReport.objects.order_by("kind", "cycle__started_at")
    stored = {f"{r.kind}-{cycles.get(r.cycle_id or 0, '')}": r.figures for r in reports}
    assert sorted(stored) == ["campaign-", "cycle-cycle-0", "cycle-cycle-1", "program-"]
    idle = make_campaign(name="Idle", salt="idle")
    stored["empty-campaign"] = uplift_report_compute(campaign=idle, now=MEASURED).figures
    empty = program_uplift(now=MEASURED, since=MEASURED + timedelta(days=1))
    stored["empty-program"] = empty.to_json()
    _check("snapshots", _normalised(stored, cycles))


def test_the_api_body_keeps_its_shape_and_figures(
    campaign: Campaign, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timezone, "now", lambda: MEASURED)
    _client, key = api_client_create(name="reports", scopes=["reports:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    body = client.get(f"/api/v1/campaigns/{campaign.pk}/uplift").json()
    assert body["report_date"] == MEASURED.date().isoformat()
    _check("api_body", _normalised(body, _cycles()))


def test_the_csv_export_keeps_its_columns_and_rows(campaign: Campaign) -> None:
    uplift_report_compute(campaign=campaign, now=MEASURED)
    text = "".join(interventions_outcomes_csv(campaign=campaign, chunk=50))
    path = GOLDEN / "assignments.csv"
    first = Intervention.objects.filter(campaign=campaign).order_by("pk").first()
    assert first is not None
    # Intervention ids as offsets from the first (sequences differ by backend).
    lines = text.splitlines()
    rows = [lines[0]] + [
        ",".join([str(int(line.split(",")[0]) - first.pk), *line.split(",")[1:]])
        for line in lines[1:]
    ]
    got = "\n".join(rows) + "\n"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(got)
    assert got == path.read_text()
