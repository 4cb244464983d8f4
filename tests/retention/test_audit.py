"""The audit trail: changes to campaigns, rules, offers, templates, tiers, API clients and model
status are logged with who made them and the values before and after (django-auditlog), and
the custom admin actions leave a record in the object's admin History."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from auditlog.models import LogEntry
from django.contrib.admin.models import LogEntry as AdminLogEntry
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Campaign, MessageTemplate, Offer, Rule
from customers.models import ApiClient
from customers.services import api_client_create
from scoring.models import ChurnModel, ModelStatus, RiskTier
from tests.campaigns.conftest import (  # noqa: F401  (fixtures used below)
    _no_global_control,
    email_rule,
    make_campaign,
    make_customers,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def boss() -> tuple[Client, User]:
    user = User.objects.create_superuser("boss", password="pw-for-tests-1")
    client = Client()
    client.force_login(user)
    return client, user


def entries_for(obj: Any) -> Any:
    return LogEntry.objects.get_for_object(obj).order_by("timestamp", "pk")


def admin_record(obj: Any) -> AdminLogEntry:
    """The one admin History entry of `obj`."""
    content_type = ContentType.objects.get_for_model(obj)
    return AdminLogEntry.objects.get(content_type=content_type, object_id=str(obj.pk))


def churn_model(version: str, status: str = ModelStatus.CANDIDATE) -> ChurnModel:
    return ChurnModel.objects.create(
        version=version,
        status=status,
        candidate="lr",
        algorithm="logistic",
        sampler="none",
        threshold=0.5,
        artifact_path=f"/nowhere/{version}.skops",
        label_definition={"kind": "behaviour", "horizon_days": 90},
    )


def test_every_audited_model_is_registered() -> None:
    from auditlog.registry import auditlog

    for model in (Campaign, Rule, Offer, MessageTemplate, RiskTier, ApiClient, ChurnModel):
        assert auditlog.contains(model), model


def test_configuration_changes_record_old_and_new_values(
    email_rule: dict[str, Any],  # noqa: F811
) -> None:
    campaign = make_campaign(rules=[email_rule])
    rule = Rule.objects.get(campaign=campaign)
    offer = Offer.objects.get(pk=rule.offer_id)
    campaign.name = "Win-back, spring"
    campaign.save()
    offer.name = "Twenty off"
    offer.save()
    assert entries_for(campaign).last().changes_dict["name"] == ["Win-back", "Win-back, spring"]
    assert entries_for(offer).last().changes_dict["name"][1] == "Twenty off"
    assert entries_for(rule).first().action == LogEntry.Action.CREATE
    tier = RiskTier.objects.order_by("pk").first()
    assert tier is not None  # the tiers are seeded by a migration
    tier.color = "#123456"
    tier.save()
    assert entries_for(tier).last().action == LogEntry.Action.UPDATE


def test_api_clients_are_audited_without_their_key_hash() -> None:
    client, _ = api_client_create(name="shop", scopes=["customers:write"])
    client.is_active = False
    client.save()
    entry = entries_for(client).last()
    assert entry.changes_dict["is_active"] == ["True", "False"]
    assert all("key_hash" not in e.changes_dict for e in entries_for(client))


def test_promote_and_roll_back_in_the_admin_record_status_and_who(
    boss: tuple[Client, User],
) -> None:
    client, user = boss
    old = churn_model("v1", ModelStatus.ACTIVE)
    old.activated_at = timezone.now() - timedelta(days=30)
    old.save()
    new = churn_model("v2")
    changelist = reverse("admin:scoring_churnmodel_changelist")
    client.post(changelist, {"action": "promote", "_selected_action": [new.pk]})
    new.refresh_from_db()
    assert new.status == ModelStatus.ACTIVE
    status_change = entries_for(new).last()
    assert status_change.changes_dict["status"] == ["candidate", "active"]
    assert status_change.actor == user
    promoted = admin_record(new)
    assert promoted.user == user
    assert "Promoted to active: v2 (retired v1)" in promoted.get_change_message()

    client.post(changelist, {"action": "roll_back", "_selected_action": [new.pk]})
    old.refresh_from_db()
    assert old.status == ModelStatus.ACTIVE
    assert entries_for(old).last().changes_dict["status"] == ["retired", "active"]
    rolled = admin_record(old)
    assert "Rolled back: v1" in rolled.get_change_message()


def test_dispatch_now_and_key_rotation_leave_a_record_in_the_admin_history(
    boss: tuple[Client, User],
    email_rule: dict[str, Any],  # noqa: F811
    settings: Any,
) -> None:
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    client, user = boss
    make_customers(20)
    campaign = make_campaign(rules=[email_rule], control_percentage=10)
    client.post(
        reverse("admin:campaigns_campaign_changelist"),
        {"action": "dispatch_now", "_selected_action": [campaign.pk]},
    )
    record = admin_record(campaign)
    assert record.user == user
    assert "Dispatched now" in record.get_change_message()
    assert "20 eligible" in record.get_change_message()
    history = client.get(reverse("admin:campaigns_campaign_history", args=[campaign.pk]))
    assert "Dispatched now" in history.content.decode()

    api, _ = api_client_create(name="shop", scopes=["customers:write"])
    client.post(
        reverse("admin:customers_apiclient_changelist"),
        {"action": "rotate_keys", "_selected_action": [api.pk]},
    )
    api.refresh_from_db()
    rotated = admin_record(api)
    assert rotated.user == user and api.key_prefix in rotated.get_change_message()


def test_the_audit_log_is_visible_in_the_admin(boss: tuple[Client, User]) -> None:
    client, _ = boss
    churn_model("v9")
    page = client.get(reverse("admin:auditlog_logentry_changelist"))
    assert page.status_code == 200
    assert "v9" in page.content.decode()
