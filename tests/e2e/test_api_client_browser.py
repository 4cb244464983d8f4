"""A privacy desk's API client made in the admin: the scopes are one box each, the two
personal-data ones unticked until staff tick them."""

from __future__ import annotations

import os
from typing import Any

import pytest
from django.contrib.auth.models import User

from customers.models import ApiClient
from tests.e2e.test_admin_browser import login, page  # noqa: F401  (the Playwright fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_staff_grant_the_erase_scope_by_ticking_its_box(page: Any, live_server: Any) -> None:  # noqa: F811
    User.objects.create_superuser("boss", password="browser-pw-1")
    base = live_server.url
    login(page, base, "boss")
    page.goto(f"{base}/admin/customers/apiclient/add/")
    erase = page.get_by_label("Erase a customer's personal data (irreversible)")
    assert not erase.is_checked()
    assert page.get_by_label("Read customers and scores").is_checked()
    page.fill("#id_name", "privacy-desk")
    for label in ("Read customers and scores", "Write customers, orders, events and consent"):
        page.get_by_label(label).uncheck()
    for label in ("Log campaign responses and redeem coupons", "Read campaign reports"):
        page.get_by_label(label).uncheck()
    erase.check()
    page.get_by_label("Export everything held about a customer").check()
    if os.environ.get("SCREENSHOT_DIR"):
        page.screenshot(path=f"{os.environ['SCREENSHOT_DIR']}/api-client-add.png", full_page=True)
    page.click("input[name=_save]")
    page.wait_for_selector("text=shown once")
    assert ApiClient.objects.get().scopes == ["customers:erase", "customers:export"]
