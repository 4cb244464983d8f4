"""The admin's uplift pages, rendered through the admin views: the report with its figures and
charts, a reference effect when a cycle carries one, recompute, the streamed CSV of the
assignment log with outcomes, the program report and the holdout planner on the form."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.test import Client

from campaigns.measurement.export import interventions_outcomes_csv
from campaigns.measurement.snapshots import campaign_cycle_reference_attach
from campaigns.models import Campaign, CampaignCycle, Intervention, UpliftReport
from campaigns.money import money
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from campaigns.uplift.report import CampaignUpliftReport, ProgramUpliftReport, ReferenceEffect
from customers.models import Order
from tests.campaigns.conftest import NOON, make_campaign, make_customers

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db: None) -> Client:
    User.objects.create_superuser("boss", password="pw-123456789")
    client = Client()
    # django-axes needs the request to authenticate (settings: "Admin login").
    client.login(request=HttpRequest(), username="boss", password="pw-123456789")
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
    response = staff.get(f"/admin/campaigns/campaign/{campaign.pk}/uplift/assignments.csv")
    assert response.status_code == 200 and response.streaming
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == Intervention.objects.filter(campaign=campaign).count() == 60
    assert sum(int(r["retained"]) for r in rows) == 25
    assert {r["arm"] for r in rows} == {"treatment", "control"}
    # Chunked: a tiny chunk gives the same rows.
    chunks = list(interventions_outcomes_csv(campaign=campaign, chunk=7))
    assert len(chunks) == 1 + 9
    assert "".join(chunks) == text


def _cell_texts(html: str, table_id: str) -> list[list[str]]:
    table = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r"<tr>(.*?)</tr>", table, flags=re.S)
    return [
        [
            re.sub(r"<[^>]+>", "", cell).strip()
            for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", r, flags=re.S)
        ]
        for r in rows
    ]


def test_the_report_page_shows_the_snapshot_figures(staff: Client, campaign: Campaign) -> None:
    html = staff.get(f"/admin/campaigns/campaign/{campaign.pk}/uplift/").content.decode()
    report = CampaignUpliftReport.from_json(UpliftReport.objects.get(kind="campaign").figures)
    o = report.overall
    assert o is not None and o.retention is not None and o.incremental_revenue is not None
    rows = _cell_texts(html, "overall")
    assert rows[1][:3] == ["Customers", str(o.treatment.n), str(o.control.n)]
    assert rows[2][1:3] == [f"{o.treatment.rate * 100:.1f}%", f"{o.control.rate * 100:.1f}%"]
    difference = o.retention.difference * 100
    low, high = o.retention.ci_low * 100, o.retention.ci_high * 100
    assert rows[2][3] == f"{difference:+.2f} pp{low:+.2f} pp to {high:+.2f} pp"  # CI below it
    assert money(o.incremental_revenue.estimate) in html.split('id="incremental-revenue"')[1]
    assert html.split('id="report-status">')[1].startswith(report.status.capitalize())
    # One breakdown table per non-empty breakdown, one row per group.
    assert html.count('class="uplift-table breakdown"') == 4  # rule, tier, channel, cycle
    assert f"<td>{report.by_rule[0].group}</td>" in html
    assert 'id="reference-effect"' not in html  # nothing attached to this campaign's cycles


def test_the_report_page_shows_a_reference_effect_attached_to_a_cycle(
    staff: Client, campaign: Campaign
) -> None:
    reference = ReferenceEffect(
        label="true simulated effect (synthetic data)",
        short_label="true",
        retention_effect=0.1056,
        by_tier={"critical": 0.12},
        treated_n=40,
    )
    cycle = CampaignCycle.objects.get(campaign=campaign)
    campaign_cycle_reference_attach(cycle=cycle, effect=reference)
    html = staff.get(f"/admin/campaigns/campaign/{campaign.pk}/uplift/").content.decode()
    paragraph = html.split('class="reference-effect"', 1)[1].split("</p>", 1)[0]
    assert "True simulated effect (synthetic data)" in paragraph
    assert 'id="reference-effect">+10.56 pp<' in paragraph
    assert "critical +12.00 pp" in paragraph


def test_the_program_report_and_the_planner(
    settings: Any, email_rule: dict[str, Any], staff: Client
) -> None:
    settings.GLOBAL_CONTROL_PERCENT = 20
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    make_customers(80)
    campaign = make_campaign(rules=[email_rule])
    campaign_dispatch(campaign=campaign, now=NOON)
    page = staff.get("/admin/campaigns/campaign/program-uplift/")
    html = page.content.decode()
    assert page.status_code == 200 and "global control" in html.lower()
    report = ProgramUpliftReport.from_json(UpliftReport.objects.get(kind="program").figures)
    assert report.overall is not None and report.overall.retention is not None
    rows = _cell_texts(html, "program-overall")
    assert rows[1] == [
        "Customers",
        str(report.overall.treatment.n),
        str(report.overall.control.n),
        "",
        "",
    ]
    assert 0 < report.overall.control.n < 80
    assert 'data-chart="program-lift"' in html
    form = staff.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert "holdout-planner" in form and "smallest difference" in form
    assert 'class="mde"' in form


def test_the_report_page_compares_rules_with_the_uplift_policy(
    staff: Client, campaign: Campaign
) -> None:
    """A second cycle the policy chose (as the policy dispatch records it): the page shows each
    targeting mode in words with its interval, money and ROI, and policy − rules."""
    url = f"/admin/campaigns/campaign/{campaign.pk}/uplift/"
    page = staff.get(url).content.decode()
    assert 'id="by-targeting"' not in page  # one targeting mode: nothing to compare
    later = NOON + timedelta(days=40)
    make_customers(60, start=1000)
    campaign_dispatch(campaign=campaign, now=later)
    interventions_relay(now=later)
    second = CampaignCycle.objects.get(campaign=campaign, started_at=later)
    second.targeting = "uplift_policy"
    second.save(update_fields=["targeting"])
    treated = list(second.interventions.filter(arm="treatment").select_related("customer"))
    for index, row in enumerate(treated[: len(treated) // 2]):
        Order.objects.create(
            external_id=f"p{index}",
            customer=row.customer,
            placed_at=later + timedelta(days=2),
            amount=Decimal("30"),
        )
    staff.post(url)  # recompute today's snapshot
    page = staff.get(url).content.decode()
    table = page.split('id="by-targeting"')[1].split("</table>")[0]
    assert "<td>Rules</td>" in table and "<td>Uplift policy</td>" in table
    assert "uplift_policy" not in table  # words, not codes
    report = CampaignUpliftReport.from_json(UpliftReport.objects.latest("pk").figures)
    assert report.targeting is not None
    d = report.targeting.uplift_difference
    assert f"{d.estimate * 100:+.2f} pp" in table
    assert f"{d.ci_low * 100:+.2f} pp to {d.ci_high * 100:+.2f} pp" in table
    policy = report.targeting.policy
    assert policy.incremental_revenue is not None
    assert money(policy.incremental_revenue.estimate) in table
    assert " of ROI" in table and " per treated customer" in table
    assert 'data-chart="targeting"' in page  # the forest plot of the two modes and their difference
