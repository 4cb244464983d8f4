"""retention_cycle's uplift stage: it snapshots every campaign and the program, and prints each
campaign's estimate beside any reference effect a cycle carries (the demo's true effect is one:
tests/demo), with its money, its tiers and the report's URL."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from campaigns.cycle import dispatch_stage, uplift_stage
from campaigns.measurement.snapshots import campaign_cycle_reference_attach
from campaigns.models import Campaign, CampaignCycle, UpliftReport
from campaigns.uplift.report import ReferenceEffect
from customers.models import Order
from retention.sources import sources_load
from tests.campaigns.conftest import make_customers
from tests.demo.files import demo_sources

pytestmark = pytest.mark.django_db


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """The demo's campaigns, without simulation: nothing here knows of the demo's simulator."""
    return demo_sources(tmp_path, simulate=False)


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
    assert data["campaigns"] == [] or data["campaigns"][0]["status"] == "empty"
    assert data["program"]["difference"] is None


def test_the_stage_prints_the_estimate_beside_a_reference_effect(
    settings: Any, sources: Path
) -> None:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.GLOBAL_CONTROL_PERCENT = 10
    customers = make_customers(400, risk_tier="critical")
    dispatch_stage(campaigns_spec=sources_load(sources).campaigns)
    Order.objects.bulk_create(
        Order(
            external_id=f"o{c.pk}",
            customer=c,
            placed_at=c.interventions.get().created_at.replace(microsecond=0),
            amount=30,
        )
        for c in customers[::3]
    )
    reference = ReferenceEffect(
        label="effect from the pilot",
        short_label="pilot",
        retention_effect=0.0123,
        by_tier={"critical": 0.02},
        treated_n=300,
    )
    row = CampaignCycle.objects.get()
    campaign_cycle_reference_attach(cycle=row, effect=reference)
    data, lines = uplift_stage(as_of=sources_load(sources).as_of)
    [campaign] = data["campaigns"]
    report = UpliftReport.objects.get(kind="campaign")
    assert report.campaign == Campaign.objects.get()
    assert campaign["reference_effect"] == 0.0123
    assert campaign["reference_effect_by_tier"] == {"critical": 0.02}
    assert lines[0].startswith("Win-back (demo) (interim): retained ")
    assert lines[1].startswith("  effect from the pilot: +1.23 pp — ")
    assert lines[1].endswith(" the interval")
    assert lines[2].startswith("  incremental revenue ")
    tier = next(line for line in lines if line.startswith("  tier critical: "))
    assert tier.endswith(" · pilot +2.0 pp")
    assert (
        lines[-2].startswith("  report: http")
        and f"/campaign/{report.campaign_id}/uplift/" in lines[-2]
    )
    assert lines[-1].startswith("Program: global control (")
    assert data["program"]["global_control_n"] > 0


def test_the_stage_prints_rules_against_the_uplift_policy(settings: Any, sources: Path) -> None:
    """A campaign with a rule-targeted and a policy-targeted cycle (as the policy dispatch
    records it): each mode's uplift with its interval, money and ROI, then policy − rules."""
    from datetime import UTC, datetime, timedelta

    from campaigns.services.dispatch import campaign_dispatch
    from campaigns.services.relay import interventions_relay

    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.GLOBAL_CONTROL_PERCENT = 0
    make_customers(300, risk_tier="critical")
    dispatch_stage(campaigns_spec=sources_load(sources).campaigns)
    campaign = Campaign.objects.get()
    first = CampaignCycle.objects.get()
    later = first.started_at + timedelta(days=45)
    campaign_dispatch(campaign=campaign, now=later)
    interventions_relay(now=later)
    second = CampaignCycle.objects.exclude(pk=first.pk).get()
    CampaignCycle.objects.filter(pk=second.pk).update(targeting="uplift_policy")
    treated = second.interventions.filter(arm="treatment").select_related("customer")
    Order.objects.bulk_create(
        Order(
            external_id=f"p{row.pk}",
            customer=row.customer,
            placed_at=later + timedelta(days=1),
            amount=40,
        )
        for row in list(treated)[::2]
    )
    data, lines = uplift_stage(as_of=datetime(2026, 1, 1, tzinfo=UTC))
    [report] = data["campaigns"]
    assert set(report["by_targeting"]) == {"rules", "uplift_policy"}
    policy = report["by_targeting"]["uplift_policy"]
    assert policy["difference"] > report["by_targeting"]["rules"]["difference"]
    difference = report["targeting_difference"]
    assert difference["estimate"] == pytest.approx(
        policy["difference"] - report["by_targeting"]["rules"]["difference"]
    )
    start = lines.index("  by targeting:")
    assert lines[start + 1].startswith("  rules: ") and " control → " in lines[start + 1]
    assert lines[start + 2].startswith("  uplift policy: ")
    assert " · incremental revenue " in lines[start + 2] and " · ROI " in lines[start + 2]
    assert lines[start + 3].startswith(
        f"  uplift policy − rules: {difference['estimate'] * 100:+.2f} pp (95% CI "
    )
