"""A real headless Chromium per role: an agent works a callback to "no answer" and sees it
rescheduled; an analyst opens the uplift report and a customer and meets no link it cannot
follow. Every test fails on a 403, a 500 or a traceback anywhere on its way."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from campaigns.models import CallbackTask, Campaign
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from customers.models import Consent, Order
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer, make_template
from tests.e2e.test_admin_browser import login, page  # noqa: F401  (the Playwright fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def user_in(username: str, group: str) -> User:
    user = User.objects.create_user(username, password="browser-pw-1", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


def watch_errors(browser_page: Any) -> list[str]:
    """Every response of the page that is a 403 or a 5xx, and every page that shows a traceback."""
    errors: list[str] = []

    def on_response(response: Any) -> None:
        if response.status == 403 or response.status >= 500:
            errors.append(f"{response.status} {response.url}")
        elif response.status < 300 and "text/html" in (response.headers.get("content-type") or ""):
            body = response.text()
            if "Traceback" in body or "Server Error" in body:
                errors.append(f"traceback on {response.url}")

    browser_page.on("response", on_response)
    return errors


def follow_every_link(browser_page: Any) -> list[str]:
    """GET every admin link of the current page with the user's session; returns the ones that
    answer 403 or 5xx (a link the role cannot follow) or show a traceback."""
    hrefs = browser_page.eval_on_selector_all(
        "a[href]", "nodes => nodes.map(n => n.getAttribute('href'))"
    )
    seen: set[str] = set()
    broken: list[str] = []
    for href in hrefs:
        url = urljoin(browser_page.url, href)
        if not urlparse(url).path.startswith("/admin/") or url.split("#")[0] in seen:
            continue
        seen.add(url.split("#")[0])
        answer = browser_page.request.get(url)
        if answer.status == 403 or answer.status >= 500 or "Traceback" in answer.text():
            broken.append(f"{answer.status} {href}")
    assert seen, "the page has no admin links at all"
    return broken


def callback_for(agent: User) -> CallbackTask:
    """Robin (Paris time, six orders) to call with a coupon and a script; a colleague's task
    for someone else that the agent must not see."""
    robin, other = make_customers(2, start=7000, risk_tier="high", churn_probability=0.72)
    robin.name, robin.time_zone = "Robin Caller", "Europe/Paris"
    robin.save(update_fields=["name", "time_zone"])
    for customer in (robin, other):
        Consent.objects.create(
            customer=customer, channel="call", status="granted", recorded_at=NOON, source="t"
        )
    Order.objects.bulk_create(
        Order(
            external_id=f"r{i}",
            customer=robin,
            placed_at=NOON - timedelta(days=30 * i),
            amount=Decimal("40") + i,
        )
        for i in range(6)
    )
    script = make_template(
        "callback",
        name="Win-back call",
        subject="Win-back call",
        body="Hello {{ first_name }}, this is the shop. We would like to offer you "
        "{{ offer.description }}: your code is {{ coupon_code }}.",
    )
    offer = make_offer(name="Fifteen off")
    rule = {"name": "call", "channel": "callback", "offer": offer, "template": script}
    campaign_dispatch(campaign=make_campaign(rules=[rule], control_percentage=0), now=NOON)
    interventions_relay(now=NOON)
    colleague = User.objects.create_user("colleague", is_staff=True)
    CallbackTask.objects.filter(customer=other).update(assigned_agent=colleague)
    return CallbackTask.objects.get(customer=robin, assigned_agent=agent)


def test_an_agent_works_a_callback_to_no_answer_and_sees_it_rescheduled(
    page: Any,  # noqa: F811
    live_server: Any,
    settings: Any,
) -> None:
    settings.CALLBACK_RETRY_ATTEMPTS, settings.CALLBACK_RETRY_SPACING_HOURS = 3, 4
    agent = user_in("agent", "agents")
    task = callback_for(agent)
    code = task.intervention.coupon.code  # type: ignore[attr-defined]
    base = live_server.url
    errors = watch_errors(page)

    login(page, base, "agent")
    page.goto(f"{base}/admin/campaigns/mycallback/")
    listing = page.inner_text("#result_list")
    assert "Robin Caller" in listing and "Customer 7001" not in listing
    page.click("text=Robin Caller")
    page.wait_for_selector("#call-sheet")
    assert page.inner_text("#sheet-coupon") == code
    script = page.inner_text("#sheet-script")
    assert "Hello Robin, this is the shop" in script and code in script
    assert "(Europe/Paris)" in page.inner_text("#sheet-local-time")
    assert page.locator("#sheet-orders tbody tr").count() == 5
    assert "Call 1 of 3" in page.inner_text("#sheet-customer")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.screenshot(path=str(SCREENSHOTS / "agent-callback.png"), full_page=True)

    page.select_option("#id_outcome", "no_answer")
    page.fill("#id_notes", "Rang 10 times, no voicemail")
    clicked_at = timezone.now()
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    assert "Rescheduled: call again at" in page.inner_text(".messagelist")
    task.refresh_from_db()
    assert (task.status, task.attempts, task.outcome) == ("open", 1, "")
    assert task.due_at >= clicked_at + timedelta(hours=4) - timedelta(seconds=1)
    row = page.locator("#result_list tbody tr", has_text="Robin Caller")
    assert "Open" in row.inner_text()

    page.click("#result_list >> text=Robin Caller")
    page.wait_for_selector("#call-sheet")
    assert "Call 2 of 3" in page.inner_text("#sheet-customer")
    assert "no_answer (agent) — Rang 10 times" in page.inner_text("#sheet-log")
    assert errors == []


def reported_campaign() -> Campaign:
    """60 customers by email, 30% held out, sent at NOON, with orders after it."""
    customers = make_customers(60)
    template = make_template("email")
    rule = {"name": "mail", "channel": "email", "offer": make_offer(), "template": template}
    campaign = make_campaign(rules=[rule], control_percentage=Decimal("30"))
    campaign_dispatch(campaign=campaign, now=NOON)
    interventions_relay(now=NOON)
    Order.objects.bulk_create(
        Order(
            external_id=f"o{c.pk}",
            customer=c,
            placed_at=NOON + timedelta(days=2),
            amount=Decimal("30"),
        )
        for c in customers[::3]
    )
    return campaign


def test_an_analyst_opens_the_uplift_report_and_a_customer_and_meets_no_dead_link(
    page: Any,  # noqa: F811
    live_server: Any,
    settings: Any,
) -> None:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    campaign = reported_campaign()
    user_in("ana", "analysts")
    base = live_server.url
    errors = watch_errors(page)

    login(page, base, "ana")
    page.wait_for_selector("#overview")  # the landing page: the overview
    assert "Active campaigns" in page.inner_text("#overview")
    menu = page.inner_text("#nav-sidebar")
    assert "Customers" in menu and "Uplift reports" in menu
    assert "Offers" not in menu and "Message templates" not in menu
    assert follow_every_link(page) == []

    page.goto(f"{base}/admin/campaigns/campaign/")
    page.click(f"tr:has-text('{campaign.name}') >> text=uplift")
    page.wait_for_selector("svg[data-chart=lift]")
    assert follow_every_link(page) == []

    page.goto(f"{base}/admin/campaigns/intervention/?campaign__id__exact={campaign.pk}")
    page.click("#result_list tbody tr th a")
    page.wait_for_selector("fieldset")
    # The offer is named but not a link: analysts may not open offers.
    assert page.locator("a[href*='/campaigns/offer/']").count() == 0
    assert follow_every_link(page) == []
    page.click(".field-customer_link a")
    page.wait_for_selector("#customer_form")
    assert follow_every_link(page) == []
    page.screenshot(path=str(SCREENSHOTS / "analyst-customer.png"), full_page=True)
    assert errors == []

    # Typed by hand, a page outside the role is refused in words, inside the admin's frame.
    refused = page.goto(f"{base}/admin/campaigns/offer/")
    assert refused is not None and refused.status == 403
    assert "This page is not available to your role" in page.inner_text("#content-main")
    assert "open to: CRM staff" in page.inner_text("#content-main")
    assert page.inner_text("#site-name") == "Retention service"
    page.screenshot(path=str(SCREENSHOTS / "analyst-403.png"), full_page=True)
    page.click("#back-home")
    page.wait_for_selector("#overview")
