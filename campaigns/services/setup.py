"""Campaign setup: the staff groups and their permissions (after migrate), and the campaigns,
offers and templates a JSON spec describes (the demo's seed), created once by name.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from campaigns.models import Campaign, MessageTemplate, Offer, Rule

# Permissions of the two staff roles (codenames of the campaigns app); created after migrate.
CRM_STAFF_GROUP = "crm staff"
ROLE_PERMISSIONS = {
    CRM_STAFF_GROUP: [
        f"{action}_{model}"
        for model in ("campaign", "rule", "offer", "messagetemplate")
        for action in ("add", "change", "view")
    ]
    + [
        "view_intervention",
        "view_campaigncycle",
        "view_coupon",
        "view_callbacktask",
        "change_callbacktask",
        "view_response",
    ],
}


def campaign_groups_ensure(*, using: str = "default") -> None:
    """The "crm staff" and agents groups with their permissions (idempotent; after migrate)."""
    from django.contrib.auth.models import Group, Permission

    roles = {
        **ROLE_PERMISSIONS,
        settings.CAMPAIGN_AGENTS_GROUP: ["view_mycallback", "change_mycallback"],
    }
    for name, codenames in roles.items():
        group, _ = Group.objects.using(using).get_or_create(name=name)
        permissions = Permission.objects.using(using).filter(
            content_type__app_label="campaigns", codename__in=codenames
        )
        group.permissions.add(*permissions)


def campaigns_seed(*, spec: dict[str, Any]) -> list[Campaign]:
    """Create the offers, templates and campaigns (with rules) a spec describes, by name, when
    they do not exist yet; existing ones are left as staff edited them. Returns new campaigns."""
    created: list[Campaign] = []
    with transaction.atomic():
        offers = {
            o["name"]: Offer.objects.get_or_create(name=o["name"], defaults=o)[0]
            for o in spec.get("offers", [])
        }
        templates = {
            t["name"]: MessageTemplate.objects.get_or_create(name=t["name"], defaults=t)[0]
            for t in spec.get("templates", [])
        }
        for item in spec.get("campaigns", []):
            fields = {k: v for k, v in item.items() if k != "rules"}
            if Campaign.objects.filter(name=fields["name"]).exists():
                continue
            campaign = Campaign.objects.create(**fields)
            for position, rule in enumerate(item.get("rules", []), start=1):
                values = {k: v for k, v in rule.items() if k not in ("offer", "template")}
                values.setdefault("position", position)
                Rule.objects.create(
                    campaign=campaign,
                    offer=offers.get(rule.get("offer", "")) if rule.get("offer") else None,
                    template=templates.get(rule["template"]) if rule.get("template") else None,
                    **values,
                )
            created.append(campaign)
    return created
