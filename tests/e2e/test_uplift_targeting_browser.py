"""A real headless Chromium walks uplift targeting as staff: the campaign form's targeting
fields, the preview's policy section against risk targeting, an uplift model's page and the
customer page's predicted uplift; each page is screenshotted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from campaigns.models import Campaign, Targeting
from campaigns.services.uplift_models import uplift_model_train
from tests.campaigns.uplift_fixtures import (
    customers_with_history,
    finished_cycles,
    two_action_campaign,
)
from tests.e2e.test_admin_browser import login, page  # noqa: F401  (the Playwright fixture)
from tests.e2e.test_csp_browser import watch_csp_violations

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def test_staff_walk_uplift_targeting(
    page: Any,  # noqa: F811
    live_server: Any,
    settings: Any,
    tmp_path: Path,
) -> None:
    settings.MODEL_ARTIFACT_DIR = tmp_path / "models"
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.CONSENT_DEFAULTS = {**settings.CONSENT_DEFAULTS, "sms": True}
    settings.UPLIFT_BOOTSTRAP_RESAMPLES = 50
    User.objects.create_superuser("boss", password="browser-pw-1")
    customers_with_history(300)
    campaign = two_action_campaign()
    model = uplift_model_train(campaign=campaign, now=finished_cycles(campaign)).model
    assert model is not None
    Campaign.objects.filter(pk=campaign.pk).update(
        targeting=Targeting.UPLIFT_POLICY, policy_budget=400
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    base = live_server.url
    violations = watch_csp_violations(page)
    login(page, base, "boss")
    page.goto(f"{base}/admin/campaigns/campaign/{campaign.pk}/change/")
    assert page.locator("#id_targeting").input_value() == "uplift_policy"
    assert "Policy budget per cycle (EUR)" in page.inner_text("fieldset:has(#id_targeting)")
    page.locator("fieldset:has(#id_targeting)").screenshot(
        path=str(SCREENSHOTS / "uplift-targeting-form.png")
    )

    page.goto(f"{base}/admin/campaigns/campaign/{campaign.pk}/preview/")
    table = page.locator("#policy-expected")
    assert table.locator("tbody tr").count() == 4
    policy_value = table.locator("tbody tr:nth-child(3) td.policy").inner_text()
    assert policy_value.startswith("€")
    page.screenshot(path=str(SCREENSHOTS / "uplift-policy-preview.png"), full_page=True)

    page.click("#policy-intro a")
    page.wait_for_selector("table.uplift-validation")
    rows = page.locator("table.uplift-validation tbody tr")
    assert rows.count() == 2
    assert "95% interval" in rows.first.inner_text()
    page.screenshot(path=str(SCREENSHOTS / "uplift-model.png"), full_page=True)

    page.goto(f"{base}/admin/campaigns/upliftmodel/")
    assert "champion" in page.inner_text("#result_list")
    page.screenshot(path=str(SCREENSHOTS / "uplift-models.png"), full_page=True)

    customer = campaign.interventions.first().customer  # type: ignore[union-attr]
    page.goto(f"{base}/admin/customers/customer/{customer.pk}/change/")
    panel = page.locator("table.uplift-panel")
    assert panel.locator("tbody tr").count() == 2
    panel.screenshot(path=str(SCREENSHOTS / "uplift-customer-panel.png"))
    assert violations == []
