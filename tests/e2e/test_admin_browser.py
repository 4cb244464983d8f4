"""A real headless Chromium (Playwright) drives the admin: CRM staff build a two-rule campaign
and preview it; an agent opens "My callbacks" and records an outcome."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from campaigns.models import CallbackTask, Campaign, Intervention, Response
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from campaigns.services.setup import campaign_groups_ensure
from customers.models import Consent
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer, make_template

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium to run browser tests")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's ORM calls are still
    # synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--no-first-run",
                ],
            )
            context = browser.new_context()
            context.set_default_timeout(20_000)
            yield context.new_page()
            browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def login(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "browser-pw-1")
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")


def test_crm_staff_build_and_preview_a_campaign_and_an_agent_records_an_outcome(
    page: Any, live_server: Any, settings: Any
) -> None:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)  # the test may run at night in the customers' zone
    campaign_groups_ensure()
    crm = User.objects.create_user("crm", password="browser-pw-1", is_staff=True)
    crm.groups.add(Group.objects.get(name="crm staff"))
    agent = User.objects.create_user("agent", password="browser-pw-1", is_staff=True)
    agent.groups.add(Group.objects.get(name="agents"))
    make_customers(60, risk_tier="critical")
    make_customers(40, start=1000, risk_tier="high", churn_probability=0.6)
    offer = make_offer(name="Fifteen off")
    make_template("email", name="Win-back email")
    # A callback for the agent, from an earlier campaign.
    callee = make_customers(1, start=5000, risk_tier="medium", name="Robin Caller")[0]
    Consent.objects.create(
        customer=callee, channel="call", status="granted", recorded_at=NOON, source="t"
    )
    calls = make_campaign(
        name="Calls",
        control_percentage=0,
        rules=[{"name": "call", "tiers": ["medium"], "channel": "callback", "offer": offer}],
    )
    campaign_dispatch(campaign=calls, now=NOON)
    interventions_relay(now=NOON)
    assert CallbackTask.objects.filter(assigned_agent=agent).count() == 1
    base = live_server.url

    login(page, base, "crm")
    page.goto(f"{base}/admin/campaigns/campaign/add/")
    page.fill("#id_name", "Browser win-back")
    page.select_option("#id_status", "active")
    page.fill("#id_control_percentage", "10")
    page.fill("#id_rules-0-name", "Critical by email")
    page.fill("#id_rules-0-position", "1")
    page.check("input[name='rules-0-tiers'][value='critical']")  # checkboxes, no JSON
    page.select_option("#id_rules-0-channel", "email")
    page.select_option("#id_rules-0-offer", label="Fifteen off")
    page.select_option("#id_rules-0-template", label="Win-back email")
    page.click("#rules-group .add-row a")
    page.fill("#id_rules-1-name", "High by coupon")
    page.fill("#id_rules-1-position", "2")
    page.check("input[name='rules-1-tiers'][value='high']")
    page.select_option("#id_rules-1-channel", "coupon")
    page.select_option("#id_rules-1-offer", label="Fifteen off")
    # The live audience, counted as the dispatch would while the form is still unsaved.
    from playwright.sync_api import expect

    expect(page.locator("#rule-builder .audience-campaign")).to_contain_text(
        "Eligible now (both arms): 100", timeout=15_000
    )
    assert "60 match" in page.inner_text("#rules-0 .rule-audience")
    assert "40 match" in page.inner_text("#rules-1 .rule-audience")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "rule-builder.png"), full_page=True)
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    campaign = Campaign.objects.get(name="Browser win-back")
    assert campaign.rules.count() == 2

    page.click("text=Preview")
    page.wait_for_selector("#preview-rules")
    assert page.inner_text("td.eligible") == "100"
    treated = int(page.inner_text("td.treatment"))
    control = int(page.inner_text("td.control"))
    assert treated + control == 100 and 0 < control < 30
    rows = page.locator("tr.rule-row")
    assert rows.count() == 4  # two rules x two arms
    matched = [int(rows.nth(i).locator("td.matched").inner_text()) for i in range(4)]
    assert matched[0] + matched[1] == 60 and matched[2] + matched[3] == 40
    assert "Nothing has been written" in page.content()
    assert not Intervention.objects.filter(campaign=campaign).exists()

    # Dispatch now (no broker: the relay runs in-process) and see the messages in the outbox.
    page.goto(f"{base}/admin/campaigns/campaign/")
    page.check(f"input[name=_selected_action][value='{campaign.pk}']")
    page.select_option("select[name=action]", "dispatch_now")
    page.click("button[name=index]")
    page.wait_for_selector(".messagelist li")
    said = page.inner_text(".messagelist")
    assert "sent by email" in said, said
    page.goto(f"{base}/admin/campaigns/intervention/?campaign__id__exact={campaign.pk}")
    outbox = page.inner_text("#result_list")
    assert "Sent" in outbox and "Held out" in outbox
    sent = Intervention.objects.filter(campaign=campaign, status="sent").count()
    assert sent == Intervention.objects.filter(campaign=campaign, arm="treatment").count() > 0

    page.context.clear_cookies()  # log out
    login(page, base, "agent")
    page.goto(f"{base}/admin/campaigns/mycallback/")
    page.click("text=Robin Caller")
    page.wait_for_selector("#id_outcome")
    assert "Fifteen off" in page.content()
    page.select_option("#id_outcome", "reached_accepted")
    page.fill("#id_notes", "Happy with the offer")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    task = CallbackTask.objects.get(assigned_agent=agent)
    assert task.status == "done" and task.outcome == "reached_accepted"
    assert Response.objects.filter(intervention=task.intervention, kind="callback_outcome").exists()
