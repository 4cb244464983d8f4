"""A real headless Chromium (Playwright) opens the uplift report as staff and sees its charts
rendered: SVG elements with data points, laid out with a real size on the page."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from customers.models import Order
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer, make_template
from tests.e2e.test_admin_browser import login, page  # noqa: F401  (the Playwright fixture)
from tests.e2e.test_csp_browser import watch_csp_violations

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def test_staff_open_the_uplift_report_and_see_its_charts(
    page: Any,  # noqa: F811
    live_server: Any,
    settings: Any,
) -> None:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    User.objects.create_superuser("boss", password="browser-pw-1")
    critical = make_customers(300, risk_tier="critical")
    high = make_customers(200, start=1000, risk_tier="high", churn_probability=0.6)
    offer = make_offer()
    template = make_template("email")
    campaign = make_campaign(
        control_percentage=Decimal("30"),
        rules=[
            {
                "name": "critical by email",
                "tiers": ["critical"],
                "channel": "email",
                "offer": offer,
                "template": template,
            },
            {"name": "high by coupon", "tiers": ["high"], "channel": "coupon", "offer": offer},
        ],
    )
    campaign_dispatch(campaign=campaign, now=NOON)
    interventions_relay(now=NOON)
    orders = [
        Order(
            external_id=f"o{c.pk}",
            customer=c,
            placed_at=NOON + timedelta(days=1 + c.pk % 28, hours=3),
            amount=Decimal(20 + c.pk % 50),
        )
        for c in critical[::3] + high[::4]
    ]
    Order.objects.bulk_create(orders)

    base = live_server.url
    violations = watch_csp_violations(page)
    login(page, base, "boss")
    page.goto(f"{base}/admin/campaigns/campaign/{campaign.pk}/change/")
    page.click(".object-tools >> text=Uplift report")
    page.wait_for_selector("svg[data-chart=lift]")
    for chart in ("lift", "curve", "revenue"):
        svg = page.locator(f"svg[data-chart={chart}]")
        box = svg.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
        assert svg.locator(".point").count() > 0
    # Lift: overall + 2 rules + 2 tiers; curve: 31 days x 2 arms; revenue: overall + per rule.
    assert page.locator("svg[data-chart=lift] circle.point").count() == 5
    assert page.locator("svg[data-chart=curve] circle.point").count() == 62
    assert page.locator("svg[data-chart=revenue] rect.point").count() == 6
    final = page.locator("svg[data-chart=curve] circle.point[data-series=treatment]").last
    assert float(final.get_attribute("data-value") or 0) > 0.2
    assert page.inner_text("td.n-treatment") != "0"
    page.set_viewport_size({"width": 1280, "height": 1000})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, f"the uplift report is {width}px wide at 1,280"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "uplift-report.png"), full_page=True)
    page.click("text=Program report (global control)")
    page.wait_for_selector("#program-report")
    assert violations == []  # the inline SVG charts need nothing the CSP forbids
