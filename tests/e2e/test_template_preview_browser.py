"""The message template form in a real headless Chromium: typing in the body updates the
preview with a real customer of the rule and its offer, under the Content-Security-Policy;
switching to SMS hides the subject and shows the segment count."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from campaigns.models import MessageTemplate
from tests.campaigns.conftest import make_campaign, make_customers, make_offer, make_template
from tests.e2e.test_admin_browser import login, page  # noqa: F401  (the Playwright fixture)
from tests.e2e.test_csp_browser import watch_csp_violations

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
# Where the screenshot goes (looked at by a person when the page changes).
SHOTS = Path(os.environ.get("SCREENSHOT_DIR", "var/screenshots"))


def test_typing_in_the_body_updates_the_preview_with_the_rules_customer(
    page: Any,  # noqa: F811
    live_server: Any,
) -> None:
    User.objects.create_superuser("boss", password="browser-pw-1")
    make_customers(3, risk_tier="high", churn_probability=0.5)
    make_customers(1, start=50, name="Grace Hopper", churn_probability=0.97)
    offer = make_offer(name="Spring fifteen", kind="percent_coupon", value="15")
    template = make_template("email", name="Win-back email")
    make_campaign(
        rules=[{"name": "critical", "tiers": ["critical"], "channel": "email",
                "offer": offer, "template": template}]
    )  # fmt: skip
    violations = watch_csp_violations(page)
    base = live_server.url
    login(page, base, "boss")
    page.goto(f"{base}/admin/campaigns/messagetemplate/{template.pk}/change/")
    preview = page.locator("#template-preview .preview-text")

    page.fill("#id_body", "Dear {{ customer.name }}, {{ offer.description }}: {{ coupon_code }}")
    # Playwright's expect polls through its own selectors (a string predicate would be an
    # eval, which the CSP rightly refuses).
    expect(preview).to_have_text(re.compile(r"^Dear Grace Hopper, 15% off: "))
    code = preview.inner_text().rsplit(": ", 1)[1]
    assert len(code) == 19 and code.count("-") == 3  # the dispatch's code format
    assert "offer: Spring fifteen (15% off)" in page.locator(".preview-meta").inner_text()
    assert page.locator(".preview-subject").is_visible()
    # The HTML part, made from the text body, in its sandboxed frame.
    expect(page.frame_locator(".preview-html").locator("body")).to_contain_text(
        "Dear Grace Hopper, 15% off"
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "template_preview_email.png"), full_page=True)

    page.fill("#id_body", "Hi {{ customer.email }}")  # not in the context: a readable error
    expect(page.locator(".preview-error")).to_be_visible()
    assert "Unknown variable: {{ customer.email }}" in page.locator(".preview-error").inner_text()

    page.select_option("#id_channel", "sms")
    page.fill("#id_body", "Hi {{ first_name }}, 15% off this week: " + "x" * 140)
    expect(page.locator(".preview-sms")).to_have_text("169 characters, 2 segments (GSM-7)")
    assert not page.locator(".field-subject").is_visible()
    assert not page.locator(".preview-subject").is_visible()
    assert not page.locator(".preview-error").is_visible()
    page.screenshot(path=str(SHOTS / "template_preview_sms.png"), full_page=True)
    assert violations == []
    assert MessageTemplate.objects.get().body.startswith("Hi {{ first_name }}, use")  # unsaved
