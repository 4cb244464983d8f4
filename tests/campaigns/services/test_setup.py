"""Campaign setup: seeding campaigns from a spec once (staff edits survive a rerun) and the
staff groups with their permissions."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth.models import Group

from campaigns.models import Campaign, MessageTemplate, Offer, Rule
from campaigns.services.setup import CRM_STAFF_GROUP, campaign_groups_ensure, campaigns_seed

pytestmark = pytest.mark.django_db

DEMO_SPEC = settings.BASE_DIR / "demo" / "campaigns.json"


def test_the_demo_spec_seeds_its_campaigns_once_and_keeps_staff_edits() -> None:
    spec = json.loads(DEMO_SPEC.read_text())
    created = campaigns_seed(spec=spec)
    assert [c.name for c in created] == [c["name"] for c in spec["campaigns"]]
    campaign = created[0]
    rules = list(campaign.rules.order_by("position"))
    assert [r.name for r in rules] == [r["name"] for r in spec["campaigns"][0]["rules"]]
    assert [r.position for r in rules] == list(range(1, len(rules) + 1))
    assert rules[0].offer is not None and rules[0].offer.name == "20% off (demo)"
    assert rules[0].template is not None and rules[0].template.channel == "email"

    Campaign.objects.filter(pk=campaign.pk).update(control_percentage=Decimal("25"))
    counts = (Offer.objects.count(), MessageTemplate.objects.count(), Rule.objects.count())
    assert campaigns_seed(spec=spec) == []
    assert (Offer.objects.count(), MessageTemplate.objects.count(), Rule.objects.count()) == counts
    assert Campaign.objects.get(pk=campaign.pk).control_percentage == Decimal("25")


def test_the_staff_groups_get_their_permissions_and_ensuring_twice_changes_nothing() -> None:
    campaign_groups_ensure()
    campaign_groups_ensure()
    permissions = Group.objects.get(name=CRM_STAFF_GROUP).permissions
    crm = set(permissions.values_list("codename", flat=True))
    assert {"add_campaign", "change_rule", "view_intervention", "change_callbacktask"} <= crm
    assert "delete_campaign" not in crm and "change_intervention" not in crm
    agents = Group.objects.get(name=settings.CAMPAIGN_AGENTS_GROUP)
    assert set(agents.permissions.values_list("codename", flat=True)) == {
        "view_mycallback",
        "change_mycallback",
    }
    assert Group.objects.filter(name__in=[CRM_STAFF_GROUP, "agents"]).count() == 2
