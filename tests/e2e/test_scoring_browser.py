"""A real headless Chromium drives the scoring admin: staff widen the critical tier and see at
once how many customers moved; scores and a run's drift read as words, percentages and colour
swatches, in tables that fit a 1,280 px screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from scoring.models import CustomerScore
from scoring.services.tiers import tiers_reassign
from tests.e2e.test_admin_browser import login, page  # noqa: F401 (the browser fixture)
from tests.scoring.services.test_tiers import stored_run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def fits(browser_page: Any) -> bool:
    """Nothing scrolls sideways: neither the page nor a results table in its own box."""
    return bool(
        browser_page.evaluate(
            "document.documentElement.scrollWidth <= 1280 && "
            "[...document.querySelectorAll('.results')]"
            ".every(box => box.scrollWidth <= box.clientWidth)"
        )
    )


def test_staff_widen_the_critical_tier_and_see_who_moved(page: Any, live_server: Any) -> None:  # noqa: F811
    User.objects.create_superuser("staff", "s@example.com", "browser-pw-1")
    run = stored_run([(k + 1) / 100 for k in range(100)] + [None, None])
    tiers_reassign()
    run.drift = {
        "psi": {"tenure_days": 0.31, "orders_90d": 0.04, "recency_days": 0.12},
        "feature_status": {"tenure_days": "alert", "orders_90d": "ok", "recency_days": "watch"},
        "score_psi": 0.02,
        "status": "alert",
        "n_rows": 100,
    }
    run.reasons_from, run.at_risk_from = 0.5896, 0.66
    run.timings = {**run.timings, "explained_at_finish": 0, "seconds": 41.96}
    run.save()
    CustomerScore.objects.filter(probability__isnull=True).update(
        not_scorable_reason="no completed order before 2026-11-01: model m-test learned churn "
        "from customers' orders (behaviour label) and knows nothing about this customer"
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    login(page, live_server.url, "staff")

    page.goto(f"{live_server.url}/admin/scoring/risktier/")
    assert page.inner_text("#result_list tbody tr:first-child th") == "critical"
    page.fill("#id_form-0-share", "10")
    page.click("input[name=_save]")
    message = page.inner_text(".messagelist .success:last-child")
    assert message.startswith("15 customers moved in run nightly (high → critical 5")
    assert "10 (10.0%)" in page.inner_text("#result_list")  # critical: 10 of 100 scorable
    assert fits(page)
    page.screenshot(path=str(SHOTS / "risk_tiers.png"), full_page=True)

    page.goto(f"{live_server.url}/admin/scoring/customerscore/?o=-2")
    table = page.inner_text("#result_list")
    assert "100.0%" in table and "Critical" in table
    # Where the not-scorable rows sort (first or last, so on page 1 or 2) is the database's
    # choice for NULLs: they are looked at through their filter.
    page.goto(f"{live_server.url}/admin/scoring/customerscore/?tier=not_scorable")
    assert "not scorable" in page.inner_text("#result_list")
    page.goto(f"{live_server.url}/admin/scoring/customerscore/?o=-2")
    filters = page.inner_text("#changelist-filter")
    assert filters.index("Critical") < filters.index("High") < filters.index("Not scorable")
    assert fits(page)
    page.screenshot(path=str(SHOTS / "scores.png"), full_page=True)

    page.goto(f"{live_server.url}/admin/scoring/scoringrun/{run.pk}/change/")
    body = page.inner_text("#content")
    assert "The population changed: retrain" in body and "tenure_days" in body
    assert "with a churn risk of at least 59.0%" in body and "explained 0 more" in body
    assert "42.0 s" in body and "explained_at_finish" not in body  # words, not a JSON blob
    assert fits(page)
    page.screenshot(path=str(SHOTS / "scoring_run.png"), full_page=True)
