"""A real headless Chromium reads a customer's waterfall (from the typical customer's churn risk
to theirs, in points and words) and the model's readable rules, on pages that fit 1,280 px."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from scoring.ml.distill import Student
from scoring.ml.explain import waterfall_read
from scoring.models import CustomerScore
from tests.e2e.test_admin_browser import login, page  # noqa: F401 (the browser fixture)
from tests.e2e.test_scoring_browser import fits
from tests.scoring.conftest import artifact_dir, labelled_customers, train_and_score  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def test_staff_read_the_waterfall_and_the_student_rules(
    page: Any,  # noqa: F811
    live_server: Any,
    labelled_customers: Path,  # noqa: F811
    artifact_dir: Path,  # noqa: F811
) -> None:
    run = train_and_score()
    top = CustomerScore.objects.exclude(attributions={}).order_by("-probability").first()
    assert top is not None
    User.objects.create_superuser("staff", "s@example.com", "browser-pw-1")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    login(page, live_server.url, "staff")

    page.goto(f"{live_server.url}/admin/customers/customer/{top.customer_id}/change/")
    chart = page.locator('svg[data-chart="score-waterfall"]')
    assert chart.is_visible()
    steps = chart.locator("rect.step")
    _baseline, items, rest, _method = waterfall_read(top.attributions, top.reasons)
    assert steps.count() == len(items) + (1 if abs(rest) >= 0.0005 else 0)
    body = page.inner_text("#content")
    assert "A typical customer's churn risk is" in body and f"{top.probability:.1%}" in body
    assert "raises the risk by" in body
    assert fits(page)
    chart.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "customer_waterfall.png"), full_page=True)

    page.goto(f"{live_server.url}/admin/scoring/churnmodel/{run.model_id}/change/")
    rules = page.locator("tr.student-rule")
    student = Student.from_dict(run.model.reference["student"])
    assert rules.count() == len(student.leaves)
    first = rules.first.inner_text()
    riskiest = max(student.leaves, key=lambda leaf: leaf.risk)
    assert student.rule_text(riskiest) in first and f"{riskiest.risk:.0%}" in first
    assert "it puts" in page.inner_text("#content")
    assert fits(page)
    page.screenshot(path=str(SHOTS / "model_student.png"), full_page=True)
