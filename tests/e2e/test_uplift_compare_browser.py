"""A real headless Chromium (Playwright) opens the uplift report of a campaign with a
rule-targeted and an uplift-policy-targeted cycle: the comparison table names the modes in
words, with units, and its forest plot draws both modes and their difference."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User

from campaigns.models import CampaignCycle
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from customers.models import Order
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer, make_template
from tests.e2e.test_admin_browser import login, page  # noqa: F401  (the Playwright fixture)
from tests.e2e.test_csp_browser import watch_csp_violations
from tests.e2e.test_uplift_browser import SCREENSHOTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_staff_compare_rules_with_the_uplift_policy(
    page: Any,  # noqa: F811
    live_server: Any,
    settings: Any,
) -> None:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    User.objects.create_superuser("boss", password="browser-pw-1")
    customers = make_customers(400, risk_tier="critical")
    campaign = make_campaign(
        control_percentage=Decimal("30"),
        rules=[
            {
                "name": "critical by email",
                "tiers": ["critical"],
                "channel": "email",
                "offer": make_offer(
                    kind="loyalty_points", value=Decimal("100"), unit_cost=Decimal("6")
                ),
                "template": make_template("email"),
            }
        ],
    )
    later = NOON + timedelta(days=40)
    for now, every in ((NOON, 5), (later, 2)):  # the policy's cycle retains more
        campaign_dispatch(campaign=campaign, now=now)
        interventions_relay(now=now)
        cycle = CampaignCycle.objects.get(campaign=campaign, started_at=now)
        treated = {i.customer_id for i in cycle.interventions.filter(arm="treatment")}
        Order.objects.bulk_create(
            Order(
                external_id=f"o{now:%m%d}-{c.pk}",
                customer=c,
                placed_at=now + timedelta(days=1 + c.pk % 20),
                amount=Decimal(25 + c.pk % 40),
            )
            for c in customers
            if c.pk % (every if c.pk in treated else 6) == 0
        )
    # As the policy dispatch records a cycle it chose.
    CampaignCycle.objects.filter(campaign=campaign, started_at=later).update(
        targeting="uplift_policy"
    )

    base = live_server.url
    violations = watch_csp_violations(page)
    login(page, base, "boss")
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(f"{base}/admin/campaigns/campaign/{campaign.pk}/uplift/")
    page.wait_for_selector("#by-targeting")
    table = page.inner_text("#by-targeting")
    assert "Rules" in table and "Uplift policy" in table and "uplift_policy" not in table
    assert "Uplift policy − rules" in table and " pp" in table and " of ROI" in table
    assert " per treated customer" in table
    svg = page.locator("svg[data-chart=targeting]")
    box = svg.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 60
    assert svg.locator("circle.point").count() == 3  # rules, policy, their difference
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, f"the uplift report is {width}px wide at 1,280"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#targeting-heading").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "uplift-rules-vs-policy.png"), full_page=True)
    assert violations == []
