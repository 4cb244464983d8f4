"""A real headless Chromium: from the active model's readable rules, "use as a campaign
segment" opens a new campaign whose rule targets that rule of the student; staff read the
segment in words in the rule builder's select, see its live count, and save it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from campaigns.admin_rules import active_model_segments
from campaigns.models import Campaign
from campaigns.services.setup import campaign_groups_ensure
from customers.models import Customer
from tests.campaigns.conftest import make_offer
from tests.e2e.test_admin_browser import login, page  # noqa: F401 (the browser fixture)
from tests.e2e.test_scoring_browser import fits
from tests.scoring.conftest import artifact_dir, labelled_customers, train_and_score  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


def test_staff_choose_a_student_rule_as_a_campaign_segment(
    page: Any,  # noqa: F811
    live_server: Any,
    labelled_customers: Path,  # noqa: F811
    artifact_dir: Path,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    run = train_and_score()
    make_offer(name="Fifteen off")
    version, segments = active_model_segments()
    # The riskiest rule that holds customers now, and how many.
    populated = [
        (s, Customer.objects.filter(score_model_version=version, score_student_leaf=s.leaf).count())
        for s in segments
    ]
    chosen, count = next((s, n) for s, n in populated if n > 0)
    campaign_groups_ensure()
    User.objects.create_superuser("staff", "s@example.com", "browser-pw-1")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    login(page, live_server.url, "staff")

    # From the model page's rules to a new campaign on the chosen rule.
    page.goto(f"{live_server.url}/admin/scoring/churnmodel/{run.model_id}/change/")
    row = page.locator(f'tr.student-rule[data-leaf="{chosen.leaf}"]')
    assert chosen.text in row.inner_text()
    page.locator("table.student").screenshot(path=str(SHOTS / "model_student_segments.png"))
    row.locator("a.use-segment").click()
    page.wait_for_selector("#id_rules-0-segment")
    select = page.locator("#id_rules-0-segment")
    assert select.input_value() == chosen.key
    assert page.locator("#id_rules-0-name").input_value() == f"Segment: {chosen.text}"
    # The select lists the active model's rules in words, riskiest first.
    options = select.locator("option").all_inner_texts()
    assert options[0].startswith("No segment")
    assert options[1:] == [s.label() for s in segments]
    page.fill("#id_name", "Student segment win-back")
    page.select_option("#id_rules-0-channel", "coupon")
    page.select_option("#id_rules-0-offer", label="Fifteen off")
    expect(page.locator("#rules-0 .rule-audience")).to_contain_text(
        f"{count:,} match", timeout=15_000
    )
    audience = page.inner_text("#rules-0 .rule-audience")
    assert chosen.text in audience  # the step says the rule in words
    assert "{" not in audience and "#" not in audience  # no raw JSON, no internal key
    assert fits(page)
    page.locator("#rules-0").screenshot(path=str(SHOTS / "rule_builder_segment.png"))
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    rule = Campaign.objects.get(name="Student segment win-back").rules.get()
    assert rule.segment == chosen.to_dict()
    assert page.locator("#id_rules-0-segment").input_value() == chosen.key
