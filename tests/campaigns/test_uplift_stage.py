"""retention_cycle's uplift stage: the demo simulator posts responses through the real API,
creates orders through the importer services, and the stage reports the estimate beside the
true simulated effect; a rerun changes nothing."""

from __future__ import annotations

import json
import shutil
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from campaigns.models import CampaignCycle, Response, UpliftReport
from customers.models import ApiClient, Order
from tests.campaigns.conftest import make_customers

pytestmark = pytest.mark.django_db
DEMO = Path(__file__).resolve().parents[2] / "demo"


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """The demo's sources and campaigns files without the imports (customers are made here)."""
    shutil.copy(DEMO / "campaigns.json", tmp_path / "campaigns.json")
    spec = json.loads((DEMO / "sources.json").read_text())
    spec["imports"] = []
    (tmp_path / "sources.json").write_text(json.dumps(spec))
    return tmp_path / "sources.json"


def cycle(sources: Path, *stages: str) -> dict[str, Any]:
    out = StringIO()
    call_command(
        "retention_cycle", "--sources", str(sources), "--only", *stages, "--json", stdout=out
    )
    data: dict[str, Any] = json.loads(out.getvalue())
    return data


def test_the_uplift_stage_reports_nothing_to_measure_before_any_dispatch(sources: Path) -> None:
    make_customers(5, churn_probability=None, risk_tier="")
    data = cycle(sources, "dispatch", "uplift")["uplift"]
    assert data["simulated"] == []
    assert data["campaigns"] == [] or data["campaigns"][0]["status"] == "empty"


def test_the_demo_simulation_recovers_the_true_effect_through_the_api(
    settings: Any, sources: Path
) -> None:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # The stage delivers inline (embedded mode) even when REDIS_URL is set for this run, so
    # the treated customers are contacted before the simulator looks at them.
    settings.CELERY_TASK_ALWAYS_EAGER = True
    make_customers(3000, risk_tier="critical")
    make_customers(
        1500,
        start=10_000,
        risk_tier="high",
        churn_probability=0.6,
        attributes={"Contract": "Two year"},
    )
    data = cycle(sources, "dispatch", "uplift")
    uplift = data["uplift"]
    [simulated] = uplift["simulated"]
    assert simulated["orders_created"] > 500 and simulated["responses_created"] > 1000
    assert simulated["coupons_redeemed"] > 50
    [campaign] = uplift["campaigns"]
    assert campaign["treatment"]["n"] + campaign["control"]["n"] == 4500
    assert campaign["true_effect"] == pytest.approx(
        (3000 * 0.12 + 1500 * 0.07) / 4500, abs=0.01
    )  # treated tier mix ≈ population mix
    # The estimate's 95% interval covers the truth (fixed seed; a 5% miss would be by design).
    assert campaign["ci_low"] <= campaign["true_effect"] <= campaign["ci_high"]
    assert campaign["difference"] > 0 and campaign["p_value"] < 0.05
    for key in ("incremental_revenue", "roi", "cost", "report_url"):
        assert campaign[key] is not None
    assert set(campaign["by_tier"]) == {"critical", "high"}
    # Responses came through the API with the simulator's own key, for both arms.
    assert ApiClient.objects.filter(name="demo simulator", scopes=["responses:write"]).exists()
    converted = Response.objects.filter(kind="converted")
    assert {r.intervention.arm for r in converted} == {"treatment", "control"}
    assert Response.objects.filter(kind="redeemed").count() == simulated["coupons_redeemed"]
    assert (
        Order.objects.filter(external_id__startswith="sim-").count() == simulated["orders_created"]
    )
    assert CampaignCycle.objects.get().summary["simulation"]["seed"] == 7

    counts = (Order.objects.count(), Response.objects.count())
    again = cycle(sources, "uplift")["uplift"]
    assert again["simulated"] == []  # already simulated: nothing new
    assert (Order.objects.count(), Response.objects.count()) == counts
    assert again["campaigns"][0]["difference"] == campaign["difference"]
    assert UpliftReport.objects.filter(kind="campaign").count() == 1
