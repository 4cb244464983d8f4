"""The demo's simulator: it posts responses through the real API and creates orders through the
importer services, attaches the true effect to the cycle as a reference effect, and the uplift
stage reports its estimate beside that truth; a rerun changes nothing."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from campaigns.cycle import dispatch_stage, uplift_stage
from campaigns.measurement.snapshots import REFERENCE_EFFECT_KEY
from campaigns.models import CampaignCycle, Response, UpliftReport
from customers.models import ApiClient, Order
from demo.cycle import simulate_stage
from demo.simulate import EFFECT_BY_TIER, TRUE_EFFECT_LABEL
from retention.sources import sources_load
from tests.campaigns.conftest import make_customers
from tests.demo.files import demo_sources

pytestmark = pytest.mark.django_db


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    return demo_sources(tmp_path, simulate=True)


def test_the_demo_simulation_recovers_the_true_effect_through_the_api(
    settings: Any, sources: Path
) -> None:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    # The stage delivers inline (embedded mode) even when REDIS_URL is set for this run, so
    # the treated customers are contacted before the simulator looks at them.
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.GLOBAL_CONTROL_PERCENT = 0  # every matched customer is in the comparison
    make_customers(3000, risk_tier="critical")
    make_customers(
        1500,
        start=10_000,
        risk_tier="high",
        churn_probability=0.6,
        attributes={"Contract": "Two year"},
    )
    dispatch_stage(campaigns_spec=sources_load(sources).campaigns)
    data, lines = simulate_stage(config={"seed": 7}, as_of=sources_load(sources).as_of)
    [simulated] = data["simulated"]
    assert simulated["orders_created"] > 500 and simulated["responses_created"] > 1000
    assert simulated["coupons_redeemed"] > 50
    assert lines[0].startswith("Simulated (SYNTHETIC) Win-back (demo) cycle ")
    assert lines[-1].startswith("Simulation: data as of 1998-07-01; ")

    uplift, uplift_lines = uplift_stage(as_of=sources_load(sources).as_of)
    [campaign] = uplift["campaigns"]
    assert campaign["treatment"]["n"] + campaign["control"]["n"] == 4500
    assert campaign["reference_label"] == TRUE_EFFECT_LABEL
    assert campaign["reference_effect"] == pytest.approx(
        (3000 * EFFECT_BY_TIER["critical"] + 1500 * EFFECT_BY_TIER["high"]) / 4500, abs=0.01
    )  # treated tier mix ≈ population mix
    # The estimate's 95% interval covers the truth (fixed seed; a 5% miss would be by design).
    assert campaign["ci_low"] <= campaign["reference_effect"] <= campaign["ci_high"]
    assert campaign["difference"] > 0 and campaign["p_value"] < 0.05
    for key in ("incremental_revenue", "roi", "cost", "report_url"):
        assert campaign[key] is not None
    assert set(campaign["by_tier"]) == {"critical", "high"}
    assert f"  {TRUE_EFFECT_LABEL}: " in "\n".join(uplift_lines)
    assert " · true +12.0 pp" in "\n".join(uplift_lines)
    # Responses came through the API with the simulator's own key, for both arms.
    assert ApiClient.objects.filter(name="demo simulator", scopes=["responses:write"]).exists()
    converted = Response.objects.filter(kind="converted")
    assert {r.intervention.arm for r in converted} == {"treatment", "control"}
    assert Response.objects.filter(kind="redeemed").count() == simulated["coupons_redeemed"]
    assert (
        Order.objects.filter(external_id__startswith="sim-").count() == simulated["orders_created"]
    )
    summary = CampaignCycle.objects.get().summary
    assert summary["simulation"]["seed"] == 7
    assert summary[REFERENCE_EFFECT_KEY]["retention_effect"] == simulated["true_retention_effect"]

    counts = (Order.objects.count(), Response.objects.count())
    again, again_lines = simulate_stage(config={"seed": 7}, as_of=sources_load(sources).as_of)
    assert again["simulated"] == []  # already simulated: nothing new
    assert again_lines == [lines[-1]]
    assert (Order.objects.count(), Response.objects.count()) == counts
    assert (
        uplift_stage(as_of=sources_load(sources).as_of)[0]["campaigns"][0]["difference"]
        == campaign["difference"]
    )
    assert UpliftReport.objects.filter(kind="campaign").count() == 1


def test_without_a_simulate_entry_the_cycle_has_no_simulate_stage(tmp_path: Path) -> None:
    sources = demo_sources(tmp_path, simulate=False)
    assert "simulate" not in sources_load(sources).demo
    make_customers(20)
    out = StringIO()
    call_command(
        "retention_cycle",
        "--sources",
        str(sources),
        "--only",
        "dispatch",
        "simulate",
        "--json",
        stdout=out,
    )
    assert set(json.loads(out.getvalue())) == {"dispatch"}
    assert not Order.objects.exists()


def test_the_demo_sources_file_asks_for_the_simulation() -> None:
    demo = sources_load(Path(__file__).resolve().parents[2] / "demo" / "telco.json").demo
    assert demo["simulate"] == {"seed": 7}
