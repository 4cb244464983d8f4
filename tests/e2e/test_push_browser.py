"""Push in a real headless Chromium: the customer page lists the customer's push devices in
words (unregistered ones with the provider's reason), and a push template's live preview shows
the title, the deep link and the lengths against what phones show, under the CSP."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from customers.models import DeviceStatus
from customers.services import device_register, devices_unregister
from tests.campaigns.conftest import make_campaign, make_customers, make_offer, make_template
from tests.e2e.test_admin_browser import login, page  # noqa: F401  (the Playwright fixture)
from tests.e2e.test_csp_browser import watch_csp_violations

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(os.environ.get("SCREENSHOT_DIR", "var/screenshots"))


def test_devices_on_the_customer_page_and_the_push_preview(
    page: Any,  # noqa: F811
    live_server: Any,
) -> None:
    User.objects.create_superuser("boss", password="browser-pw-1")
    (customer,) = make_customers(1, start=50, name="Grace Hopper")
    device_register(customer=customer, platform="android", token="fcm-token-" + "a" * 140)
    gone = device_register(
        customer=customer, platform="web", token="https://push.example/s/" + "b" * 80,
        p256dh="BP", auth="x",
    ).device  # fmt: skip
    devices_unregister(
        device_ids=[gone.pk],
        reason="Web Push 410: the subscription has expired or was removed",
        now=datetime(2026, 11, 20, 9, 30, tzinfo=UTC),
    )
    template = make_template(
        "push",
        name="Win-back push",
        subject="{{ first_name }}, a gift",
        body="{{ offer.description }} with {{ coupon_code }}",
        deep_link="https://shop.example/c?code={{ coupon_code }}",
    )
    email = make_template("email", name="Win-back email")
    campaign = make_campaign(
        rules=[{"name": "critical", "tiers": ["critical"], "channel": "push",
                "offer": make_offer(), "template": template,
                "fallback_channel": "email", "fallback_template": email}]
    )  # fmt: skip
    violations = watch_csp_violations(page)
    base = live_server.url
    login(page, base, "boss")

    page.goto(f"{base}/admin/customers/customer/{customer.pk}/change/")
    devices = page.locator("#devices-group")
    expect(devices).to_contain_text("Android app (FCM)")
    expect(devices).to_contain_text("Active")
    expect(devices).to_contain_text(
        "Unregistered on 2026-11-20 09:30 UTC: Web Push 410: the subscription has expired"
    )
    assert "…" in devices.inner_text()  # long tokens are shortened
    SHOTS.mkdir(parents=True, exist_ok=True)
    devices.screenshot(path=str(SHOTS / "customer_push_devices.png"))
    assert customer.devices.filter(status=DeviceStatus.ACTIVE).count() == 1

    page.goto(f"{base}/admin/campaigns/messagetemplate/{template.pk}/change/")
    expect(page.locator(".preview-subject")).to_have_text("Title: Grace, a gift")
    expect(page.locator(".preview-link")).to_contain_text("https://shop.example/c?code=")
    expect(page.locator(".preview-push")).to_contain_text(
        re.compile(r"title 13/65 characters, body \d+/240 characters")
    )
    assert page.locator(".field-deep_link").is_visible()
    assert not page.locator(".field-html_body").is_visible()
    assert page.locator('label[for="id_subject"]').inner_text().startswith("Title")
    page.fill("#id_body", "x" * 300)
    expect(page.locator(".preview-push-warning")).to_contain_text("phones cut it after about 240")
    page.screenshot(path=str(SHOTS / "template_preview_push.png"), full_page=True)

    # The rule builder: "push, else email", with only message channels offered as fallback.
    page.goto(f"{base}/admin/campaigns/campaign/{campaign.pk}/change/")
    fallback = page.locator("#id_rules-0-fallback_channel")
    expect(fallback).to_have_value("email")
    options = fallback.locator("option").all_inner_texts()
    assert options[0] == "No fallback" and not any("callback" in o.lower() for o in options)
    expect(page.locator("#id_rules-0-fallback_template")).to_have_value(str(email.pk))
    page.locator(".field-fallback_channel").first.screenshot(
        path=str(SHOTS / "rule_push_else_email.png")
    )
    assert violations == []
