"""A campaign in uplift policy mode: its rules are the actions, the champion model predicts,
one global allocation within the policy budget; holdout, suppression and the outbox as in
rules mode. Without a champion the cycle falls back to the rules and says so."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from campaigns.models import CampaignCycle, Intervention, Targeting, UpliftModel
from campaigns.services.dispatch import campaign_dispatch, campaign_preview
from campaigns.services.uplift_models import uplift_model_train
from customers.models import Customer
from tests.campaigns.conftest import NOON
from tests.campaigns.uplift_fixtures import (
    customers_with_history,
    finished_cycles,
    two_action_campaign,
    uplift_settings,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _settings(settings: Any, tmp_path: Path) -> None:
    uplift_settings(settings, tmp_path)


def test_policy_mode_dispatches_within_budget_and_keeps_the_holdout() -> None:
    customers_with_history(400)
    campaign = two_action_campaign()
    later = finished_cycles(campaign)
    model = uplift_model_train(campaign=campaign, now=later).model
    assert model is not None
    campaign.targeting = Targeting.UPLIFT_POLICY
    campaign.policy_budget = Decimal("500")
    campaign.exploration_percentage = Decimal("10")
    campaign.save()

    preview = campaign_preview(campaign=campaign, now=later)
    summary = campaign_dispatch(campaign=campaign, now=later)
    assert summary.targeting == preview.targeting == "uplift_policy"
    assert summary.policy["model"] == model.version and "fallback" not in summary.policy
    cycle = CampaignCycle.objects.get(campaign=campaign, cycle_key=summary.cycle_key)
    assert (cycle.targeting, cycle.uplift_model_id) == ("uplift_policy", model.pk)

    rows = list(Intervention.objects.filter(cycle=cycle).select_related("rule", "customer"))
    assert rows and summary.interventions_created == len(rows)
    assert {r.selection for r in rows} == {"policy", "exploration"}
    assert all(r.predicted_uplift is not None and r.expected_increment is not None for r in rows)
    policy_rows = [r for r in rows if r.selection == "policy"]
    assert all((r.expected_increment or 0) > 0 for r in policy_rows)
    # Budget: offer unit cost + the channel's message cost, treated rows only.
    message = {"email": 0.002, "sms": 0.05}
    spent = sum(float(r.offer_cost) + message[r.channel] for r in rows if r.arm == "treatment")
    assert spent <= 500 + 1e-6
    assert summary.policy["spent"] == pytest.approx(spent, abs=0.01)
    # Holdout: the campaign's deterministic control arm, recorded and never contacted.
    control = [r for r in rows if r.arm == "control"]
    assert control and all(r.status == "held_out" for r in control)
    treated = [r for r in rows if r.arm == "treatment"]
    assert all(r.status == "pending" for r in treated)
    # Each customer got an action whose rule matches them (tiers): the eligible frame.
    assert all(r.customer.risk_tier in r.rule.tiers for r in rows)
    # The offer only changes heavy customers (half of them): the policy prefers those.
    heavy = sum(bool(r.customer.attributes.get("heavy")) for r in policy_rows)
    assert heavy / len(policy_rows) > 0.65
    # The preview's comparison: the policy expects more than as many customers by risk.
    expected = summary.policy["expected"]
    assert expected["policy"]["customers"] == expected["risk"]["customers"] == len(treated)
    assert expected["policy"]["value"] > expected["risk"]["value"]
    # A second run of the cycle records nothing twice.
    again = campaign_dispatch(campaign=campaign, now=later)
    assert again.already_ran and Intervention.objects.filter(cycle=cycle).count() == len(rows)
    # An altered artifact is refused (checksum): the next cycle uses the rules and says why.
    UpliftModel.objects.filter(pk=model.pk).update(artifact_sha256="0" * 64)
    fallback = campaign_preview(campaign=campaign, now=later + timedelta(days=7))
    assert fallback.targeting == "rules" and fallback.eligible > 0
    assert "SHA-256 does not match" in fallback.policy["fallback"]


def test_without_a_champion_policy_mode_uses_the_rules_and_says_so() -> None:
    customers_with_history(40)
    campaign = two_action_campaign(targeting=Targeting.UPLIFT_POLICY)
    preview = campaign_preview(campaign=campaign, now=NOON)
    summary = campaign_dispatch(campaign=campaign, now=NOON)
    for result in (preview, summary):
        assert result.targeting == "rules"
        assert "without a champion uplift model" in result.policy["fallback"]
    assert summary.eligible == Customer.objects.count()
    assert set(Intervention.objects.values_list("selection", flat=True)) == {"rule"}
    cycle = CampaignCycle.objects.get()
    assert (
        cycle.targeting == "rules" and "without a champion" in cycle.summary["policy"]["fallback"]
    )
    assert not Intervention.objects.filter(predicted_uplift__isnull=False).exists()
