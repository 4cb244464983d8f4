"""The admin of uplift targeting, through the admin views: the campaign form's targeting
fields, the preview's policy section against risk targeting, the uplift models' list and page
in words, making a challenger champion, and the customer page's predicted uplift."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.http import HttpRequest
from django.test import Client

from campaigns.models import Campaign, Targeting, UpliftModel
from campaigns.services.uplift_models import uplift_model_train
from tests.campaigns.uplift_fixtures import (
    customers_with_history,
    finished_cycles,
    two_action_campaign,
    uplift_settings,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db: None) -> Client:
    User.objects.create_superuser("boss", password="pw-123456789")
    client = Client()
    client.login(request=HttpRequest(), username="boss", password="pw-123456789")
    return client


@pytest.fixture
def policy_campaign(settings: Any, tmp_path: Path) -> tuple[Campaign, UpliftModel]:
    """A campaign with a trained champion, switched to the uplift policy, at a time its
    customers can be contacted again."""
    uplift_settings(settings, tmp_path)
    customers_with_history(300)
    campaign = two_action_campaign()
    later = finished_cycles(campaign)
    model = uplift_model_train(campaign=campaign, now=later).model
    assert model is not None
    Campaign.objects.filter(pk=campaign.pk).update(
        targeting=Targeting.UPLIFT_POLICY, policy_budget=400
    )
    campaign.refresh_from_db()
    return campaign, model


def _text(html: bytes) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html.decode()))


def test_the_campaign_form_offers_targeting_budget_and_exploration(staff: Client) -> None:
    campaign = two_action_campaign()
    page = staff.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'name="targeting"' in html and "Uplift policy (the action that changes most" in html
    assert "Policy budget per cycle (EUR)" in html and 'name="policy_budget"' in html
    assert "Exploration (% of contacts)" in html and 'name="exploration_percentage"' in html


def test_the_preview_compares_the_policy_with_risk_targeting(
    staff: Client, policy_campaign: tuple[Campaign, UpliftModel]
) -> None:
    campaign, model = policy_campaign
    page = staff.get(f"/admin/campaigns/campaign/{campaign.pk}/preview/")
    assert page.status_code == 200
    text = _text(page.content)
    assert "Targeting: uplift policy" in text and model.version in text
    assert "Expected incremental retained customers" in text
    assert "As many customers by churn risk" in text
    assert "€400.00 per cycle" in text and "{" not in text.split("Targeting: uplift policy")[1]


def test_the_preview_says_when_policy_mode_falls_back_to_rules(staff: Client) -> None:
    customers_with_history(20)
    campaign = two_action_campaign(targeting=Targeting.UPLIFT_POLICY)
    text = _text(staff.get(f"/admin/campaigns/campaign/{campaign.pk}/preview/").content)
    assert "Uplift policy without a champion uplift model: targeted by rules" in text


def test_models_list_and_page_in_words_and_make_champion(
    staff: Client, policy_campaign: tuple[Campaign, UpliftModel]
) -> None:
    campaign, first = policy_campaign
    trained_at = datetime.fromisoformat(first.training_window["trained_at"])
    second = uplift_model_train(campaign=campaign, now=trained_at).model
    assert second is not None
    second.refresh_from_db()
    assert second.status == "challenger"
    listing = _text(staff.get("/admin/campaigns/upliftmodel/").content)
    assert first.version in listing and "champion" in listing and "challenger" in listing
    assert any(name in listing for name in ("T-learner", "DR-learner", "Class transformation"))
    page = staff.get(f"/admin/campaigns/upliftmodel/{first.pk}/change/")
    text = _text(page.content)
    assert page.status_code == 200
    for words in (
        "Qini of this model",
        "Qini of random targeting",
        "Qini of targeting by churn risk",
        "95% interval",
        "critical by email, email",
        "high by SMS, sms",
        "rows per arm",
        "is champion",
    ):
        assert words in text, words
    assert '"qini"' not in page.content.decode()  # no raw JSON
    response = staff.post(
        "/admin/campaigns/upliftmodel/",
        {"action": "make_champion", "_selected_action": [second.pk]},
        follow=True,
    )
    assert "is now the champion" in _text(response.content)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("challenger", "champion")


def test_the_customer_page_shows_the_predicted_uplift_per_action(
    staff: Client, policy_campaign: tuple[Campaign, UpliftModel]
) -> None:
    campaign, _model = policy_campaign
    customer = campaign.interventions.first().customer  # type: ignore[union-attr]
    text = _text(staff.get(f"/admin/customers/customer/{customer.pk}/change/").content)
    assert "Predicted uplift per action" in text
    assert "critical by email, email" in text and "high by SMS, sms" in text
    assert re.search(r"[+-]\d+\.\d pp", text)
