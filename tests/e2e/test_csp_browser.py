"""The Content-Security-Policy (django-csp) leaves the admin and the Swagger UI working: a real
headless Chromium opens them and its console reports no policy violation."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.e2e.test_admin_browser import login, page  # noqa: F401  (the Playwright fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def watch_csp_violations(page: Any) -> list[str]:  # noqa: F811
    """Collects every console message of the page that reports a blocked resource or script."""
    violations: list[str] = []

    def on_console(message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or "Refused to" in text:
            violations.append(text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: violations.append(f"page error: {error}"))
    return violations


def test_the_admin_works_under_the_policy(page: Any, live_server: Any) -> None:  # noqa: F811
    User.objects.create_superuser("boss", password="browser-pw-1")
    violations = watch_csp_violations(page)
    base = live_server.url
    response = page.goto(f"{base}/admin/login/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    login(page, base, "boss")
    paths = (
        "/admin/",
        "/admin/campaigns/campaign/",
        "/admin/campaigns/campaign/add/",
        "/admin/auditlog/logentry/",
        "/admin/axes/accessattempt/",
    )
    for path in paths:
        page.goto(f"{base}{path}")
        page.wait_for_load_state("networkidle")
    # The admin's own JavaScript ran: the sidebar toggle and the action checkbox work.
    page.goto(f"{base}/admin/auth/user/")
    page.check("#action-toggle")
    assert page.locator(".action-counter").inner_text().startswith("1 of 1")
    assert violations == []


def test_the_swagger_ui_works_under_the_policy_and_offers_the_api_key(
    page: Any,  # noqa: F811
    live_server: Any,
) -> None:
    violations = watch_csp_violations(page)
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock")  # the schema was fetched and rendered
    page.click(".btn.authorize")
    page.wait_for_selector("text=ApiKey")
    dialog = page.locator(".auth-container")
    assert dialog.locator("input").count() == 1  # where the key is pasted for Try-it-out
    assert "Bearer rk_" in dialog.inner_text()
    assert violations == []
