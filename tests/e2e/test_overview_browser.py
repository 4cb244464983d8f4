"""A real headless Chromium opens the admin as an analyst would: the landing page is the
overview, its histogram is drawn with a real size, nothing breaks the CSP, and every link on it
opens a page (no 403, no 500)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from campaigns.measurement.snapshots import uplift_report_compute
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from customers.models import Customer, Order
from tests.campaigns.conftest import NOON, make_campaign, make_offer
from tests.e2e.test_admin_browser import login, page  # noqa: F401  (the Playwright fixture)
from tests.e2e.test_csp_browser import watch_csp_violations
from tests.retention.test_overview import scored_run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def test_the_overview_is_the_landing_page_and_its_links_open(
    page: Any,  # noqa: F811
    live_server: Any,
    settings: Any,
) -> None:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    scored_run([i / 400 for i in range(400)])
    campaign = make_campaign(
        control_percentage=Decimal("30"),
        rules=[{"name": "all", "tiers": ["low"], "channel": "coupon", "offer": make_offer()}],
    )
    campaign_dispatch(campaign=campaign, now=NOON)
    interventions_relay(now=NOON)
    Order.objects.bulk_create(
        Order(
            external_id=f"o{c.pk}",
            customer=c,
            placed_at=NOON + timedelta(days=1 + c.pk % 20),
            amount=Decimal(30),
        )
        for c in Customer.objects.all()[::3]
    )
    uplift_report_compute(campaign=campaign)
    User.objects.create_superuser("boss", password="browser-pw-1")

    base = live_server.url
    violations = watch_csp_violations(page)
    login(page, base, "boss")
    page.wait_for_selector("#overview")
    box = page.locator("svg[data-chart=score-histogram]").bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    assert "pp" in page.inner_text("#active-campaigns")  # the uplift with its interval
    page.set_viewport_size({"width": 1280, "height": 900})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1280, f"the overview is {width}px wide"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "overview.png"), full_page=True)
    links = page.eval_on_selector_all(
        "#overview a", "els => [...new Set(els.map(e => e.getAttribute('href')))]"
    )
    assert len(links) >= 5
    for href in links:
        response = page.goto(f"{base}{href}")
        assert response is not None and response.status == 200, href
        assert "Traceback" not in page.content()
    assert violations == []
