"""The three staff roles: groups made by the data migration (on a fresh database too), the
create_staff_user command, links shown only where the role may go, and a 403 page in words."""

from __future__ import annotations

import importlib
from io import StringIO
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.urls import reverse

from campaigns.models import CallbackTask, Intervention
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from customers.models import Consent
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer

pytestmark = pytest.mark.django_db

ROLE_MIGRATION = "campaigns.migrations.0005_staff_roles"


def codenames(group: str) -> set[str]:
    perms = Group.objects.get(name=group).permissions.select_related("content_type")
    return {f"{p.content_type.app_label}.{p.codename}" for p in perms}


def test_the_migration_creates_the_three_groups_with_their_permissions_on_a_fresh_database() -> (
    None
):
    # A fresh database: no groups and no permissions yet (Django makes permissions only after
    # the whole migrate, so the migration has to create the ones it grants).
    Group.objects.all().delete()
    Permission.objects.all().delete()
    migration = importlib.import_module(ROLE_MIGRATION)
    with connection.schema_editor() as editor:
        migration.roles_create(django_apps, editor)

    crm = codenames("crm staff")
    assert {
        "campaigns.add_campaign",
        "campaigns.change_offer",
        "campaigns.add_messagetemplate",
    } <= (crm)
    assert {"customers.view_customer", "scoring.view_customerscore", "scoring.view_risktier"} <= (
        crm
    )
    assert "campaigns.view_upliftreport" in crm
    assert not {"campaigns.delete_campaign", "customers.change_customer"} & crm

    analysts = codenames("analysts")
    assert {"campaigns.view_upliftreport", "campaigns.view_campaign"} <= analysts
    assert {"customers.view_customer", "customers.view_order"} <= analysts
    assert not any(c.split(".")[1].startswith(("add_", "change_", "delete_")) for c in analysts)
    assert "campaigns.view_offer" not in analysts

    assert codenames("agents") == {"campaigns.view_mycallback", "campaigns.change_mycallback"}


def test_create_staff_user_puts_a_staff_user_in_the_role_with_a_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANALYST_PW", "a-long-analyst-pass-42")
    out = StringIO()
    call_command(
        "create_staff_user",
        "ana",
        "--role",
        "analyst",
        "--email",
        "ana@example.com",
        "--password-from-env",
        "ANALYST_PW",
        stdout=out,
    )
    user = User.objects.get(username="ana")
    assert user.is_staff and not user.is_superuser and user.email == "ana@example.com"
    assert user.check_password("a-long-analyst-pass-42")
    assert list(user.groups.values_list("name", flat=True)) == ["analysts"]
    assert "'analysts'" in out.getvalue()
    login = Client().post(
        reverse("admin:login"),
        {"username": "ana", "password": "a-long-analyst-pass-42", "next": "/admin/"},
    )
    assert login.status_code == 302 and login["Location"] == "/admin/"


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["bob", "--role", "agent", "--password-from-env", "NOPE"], {}, "NOPE: that variable"),
        (["bob", "--role", "agent", "--password-from-env", "PW"], {"PW": "123"}, "too short"),
        (
            ["taken", "--role", "crm", "--password-from-env", "PW"],
            {"PW": "long-pass-99x"},
            "exists",
        ),
    ],
)
def test_create_staff_user_refuses_bad_input_and_says_why(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], message: str
) -> None:
    User.objects.create_user("taken")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("NOPE", raising=False)
    with pytest.raises(CommandError, match=message):
        call_command("create_staff_user", *args)
    assert not User.objects.filter(username="bob").exists()


def staff(username: str, role: str) -> Client:
    user = User.objects.create_user(username, password="pw-for-tests-1", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def callbacks(db: None) -> Intervention:
    """Three callback interventions (with offers), relayed: one task per agent round-robin."""
    customers = make_customers(3, risk_tier="high")
    Consent.objects.bulk_create(
        [
            Consent(customer=c, channel="call", status="granted", recorded_at=NOON, source="t")
            for c in customers
        ]
    )
    rule: dict[str, Any] = {"name": "call", "channel": "callback", "offer": make_offer()}
    campaign_dispatch(campaign=make_campaign(rules=[rule], control_percentage=0), now=NOON)
    interventions_relay(now=NOON)
    return Intervention.objects.order_by("pk").first()  # type: ignore[return-value]


def test_links_on_an_intervention_are_shown_only_to_roles_that_may_follow_them(
    callbacks: Intervention,
) -> None:
    url = reverse("admin:campaigns_intervention_change", args=[callbacks.pk])
    customer_url = reverse("admin:customers_customer_change", args=[callbacks.customer_id])
    offer_url = reverse("admin:campaigns_offer_change", args=[callbacks.offer_id])

    analyst = staff("ana", "analysts")
    page = analyst.get(url).content.decode()
    assert f'href="{customer_url}"' in page and f'href="{offer_url}"' not in page
    assert "15% off" in page  # the offer is named, as text
    assert analyst.get(customer_url).status_code == 200  # the link it sees works

    crm = staff("crm", "crm staff")
    page = crm.get(url).content.decode()
    assert f'href="{customer_url}"' in page and f'href="{offer_url}"' in page
    assert crm.get(offer_url).status_code == 200


def test_a_page_a_role_may_not_open_explains_which_role_may_instead_of_a_bare_403(
    callbacks: Intervention,
) -> None:
    analyst = staff("ana", "analysts")
    refused = analyst.get(reverse("admin:campaigns_offer_changelist"))
    assert refused.status_code == 403
    html = refused.content.decode()
    assert "This page is not available to your role" in html
    assert "You are signed in as <strong>ana</strong>" in html and "(Analyst)" in html
    assert "open to: <strong>CRM staff</strong>" in html
    assert f'href="{reverse("admin:index")}"' in html

    agent = staff("agent", "agents")
    refused = agent.get(reverse("admin:customers_customer_changelist"))
    assert refused.status_code == 403
    assert "open to: <strong>CRM staff, Analyst</strong>" in refused.content.decode()


def test_agents_see_only_their_own_callbacks_on_every_callback_page(
    callbacks: Intervention,
) -> None:
    ann = User.objects.create_user("ann", password="pw-for-tests-1", is_staff=True)
    other = User.objects.create_user("other", is_staff=True)
    ann.groups.add(Group.objects.get(name="agents"))
    mine, theirs, _ = CallbackTask.objects.order_by("pk")
    CallbackTask.objects.filter(pk=mine.pk).update(assigned_agent=ann)
    CallbackTask.objects.exclude(pk=mine.pk).update(assigned_agent=other)
    client = Client()
    client.force_login(ann)
    listing = client.get(reverse("admin:campaigns_mycallback_changelist")).content.decode()
    assert "1 my callback" in listing
    assert str(mine.customer) in listing and str(theirs.customer) not in listing
    # Someone else's task is not theirs to open: the admin says it does not exist.
    foreign = client.get(reverse("admin:campaigns_mycallback_change", args=[theirs.pk]))
    assert foreign.status_code == 302
    # The team leads' page of all callbacks is not an agent's page: refused in words.
    everyone = client.get(reverse("admin:campaigns_callbacktask_changelist"))
    assert everyone.status_code == 403
    assert "not available to your role" in everyone.content.decode()


def test_create_staff_user_asks_twice_for_the_password_in_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from campaigns.management.commands import create_staff_user

    answers = iter(["agent-pass-long-1", "agent-pass-long-2", "agent-pass-long-3"] * 2)
    monkeypatch.setattr(create_staff_user, "getpass", lambda prompt: next(answers))
    monkeypatch.setattr(create_staff_user.sys.stdin, "isatty", lambda: True)
    with pytest.raises(CommandError, match="differ"):
        call_command("create_staff_user", "bob", "--role", "agent")
    assert not User.objects.filter(username="bob").exists()

    answers = iter(["agent-pass-long-9", "agent-pass-long-9"])
    call_command("create_staff_user", "bob", "--role", "agent", stdout=StringIO())
    bob = User.objects.get(username="bob")
    assert bob.check_password("agent-pass-long-9") and bob.groups.get().name == "agents"
