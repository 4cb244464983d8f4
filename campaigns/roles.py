"""The three staff roles and what each may see or do, in one table: the data migration that
creates the groups, the post-migrate check that keeps them current, the `create_staff_user`
command and the friendly 403 page ("which role opens this page") all read it.

Roles live in campaigns because they span the apps below it (customers, scoring).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings

CRM_STAFF_GROUP = "crm staff"
ANALYSTS_GROUP = "analysts"


def _perms(actions: Iterable[str], models: Iterable[str]) -> list[str]:
    return [f"{action}_{model}" for model in models for action in actions]


_EDIT = ("add", "change", "view")
_READ = ("view",)
# What "customers, scores, tiers" means in permissions: both reading roles get all of it.
_CUSTOMER_READS = {
    "customers": _perms(_READ, ("customer", "order", "event", "consent")),
    "scoring": _perms(_READ, ("customerscore", "risktier", "churnmodel", "scoringrun")),
}


def role_permissions() -> dict[str, dict[str, list[str]]]:
    """Group name → app label → permission codenames. The agents' group name is a setting
    (CAMPAIGN_AGENTS_GROUP) because the callback channel assigns tasks to its members."""
    return {
        CRM_STAFF_GROUP: {
            "campaigns": _perms(_EDIT, ("campaign", "rule", "offer", "messagetemplate"))
            + _perms(
                _READ,
                ("intervention", "campaigncycle", "coupon", "response", "upliftreport"),
            )
            + ["view_callbacktask", "change_callbacktask"],
            **_CUSTOMER_READS,
        },
        ANALYSTS_GROUP: {
            # The reports are pages of the campaign (uplift, summary) and read its log.
            "campaigns": _perms(
                _READ, ("campaign", "campaigncycle", "intervention", "response", "upliftreport")
            ),
            **_CUSTOMER_READS,
        },
        settings.CAMPAIGN_AGENTS_GROUP: {
            "campaigns": ["view_mycallback", "change_mycallback"],
        },
    }


# The --role names of `create_staff_user`.
ROLE_NAMES = ("crm", "analyst", "agent")


def role_group(role: str) -> str:
    """The group of a --role name (crm, analyst, agent)."""
    groups = {
        "crm": CRM_STAFF_GROUP,
        "analyst": ANALYSTS_GROUP,
        "agent": settings.CAMPAIGN_AGENTS_GROUP,
    }
    if role not in groups:
        raise ValueError(f"unknown role {role!r}: expected one of {', '.join(ROLE_NAMES)}")
    return groups[role]


def role_label(group: str) -> str:
    """The words the 403 page uses for a group."""
    if group == settings.CAMPAIGN_AGENTS_GROUP:
        return "Agent"
    return {CRM_STAFF_GROUP: "CRM staff", ANALYSTS_GROUP: "Analyst"}.get(group, group)


def roles_allowed(*, app_label: str, codename: str) -> list[str]:
    """The role labels whose group holds `app_label.codename`, for the 403 page."""
    return [
        role_label(group)
        for group, apps in role_permissions().items()
        if codename in apps.get(app_label, [])
    ]


def roles_apply(*, group_model: Any, permission_model: Any, using: str = "default") -> None:
    """Create each role's group and add its permissions (idempotent). Takes the models so the
    data migration can pass its historical ones; the permissions must exist already."""
    for name, apps in role_permissions().items():
        group, _ = group_model.objects.using(using).get_or_create(name=name)
        for app_label, codenames in apps.items():
            found = permission_model.objects.using(using).filter(
                content_type__app_label=app_label, codename__in=codenames
            )
            group.permissions.add(*found)
