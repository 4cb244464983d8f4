"""A real headless Chromium: CRM staff make a campaign triggered (mode and re-entry window on
the campaign page, shown in words in the list); an admin sees which event kinds rescore."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from campaigns.models import Campaign
from campaigns.services.setup import campaign_groups_ensure
from tests.campaigns.conftest import make_template
from tests.e2e.test_admin_browser import SCREENSHOTS, login, page  # noqa: F401 (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_staff_make_a_campaign_triggered_and_see_it_in_words(
    page: Any,  # noqa: F811
    live_server: Any,
) -> None:
    campaign_groups_ensure()
    crm = User.objects.create_user("crm", password="browser-pw-1", is_staff=True)
    crm.groups.add(Group.objects.get(name="crm staff"))
    User.objects.create_superuser("root", password="browser-pw-1")
    make_template("email", name="Sorry email")
    base = live_server.url

    login(page, base, "crm")
    page.goto(f"{base}/admin/campaigns/campaign/add/")
    page.fill("#id_name", "Complaint save")
    page.select_option("#id_mode", "triggered")
    page.fill("#id_reentry_days", "14")
    page.fill("#id_rules-0-name", "Critical by email")
    page.fill("#id_rules-0-position", "1")
    page.check("input[name='rules-0-tiers'][value='critical']")
    page.select_option("#id_rules-0-channel", "email")
    page.select_option("#id_rules-0-template", label="Sorry email")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "triggered-campaign-form.png"), full_page=True)
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    campaign = Campaign.objects.get(name="Complaint save")
    assert (campaign.mode, campaign.reentry_days) == ("triggered", 14)
    row = page.inner_text("#result_list")
    assert "Triggered by events, once per customer per 14 days" in row
    page.screenshot(path=str(SCREENSHOTS / "triggered-campaign-list.png"), full_page=True)

    page.context.clear_cookies()  # another person, signed in as an admin
    login(page, base, "root")
    page.goto(f"{base}/admin/customers/eventkind/")
    kinds = page.inner_text("#result_list")
    assert "complaint" in kinds and "rescore the customer now" in kinds
    page.screenshot(path=str(SCREENSHOTS / "event-kinds.png"), full_page=True)
