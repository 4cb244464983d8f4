"""Campaign setup: the staff groups and their permissions (after migrate), staff users in a
role, and the campaigns, offers and templates a JSON spec describes (the demo's seed), created
once by name.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from campaigns.models import Campaign, MessageTemplate, Offer, Rule
from campaigns.roles import CRM_STAFF_GROUP, role_group, roles_apply

__all__ = ["CRM_STAFF_GROUP", "campaign_groups_ensure", "campaigns_seed", "staff_user_create"]


def campaign_groups_ensure(*, using: str = "default") -> None:
    """The staff groups with their permissions (campaigns.roles), idempotent. The data
    migration creates them; this runs after every migrate so a model added later reaches them."""
    from django.contrib.auth.models import Group, Permission

    roles_apply(group_model=Group, permission_model=Permission, using=using)


def staff_user_create(*, username: str, role: str, password: str, email: str = "") -> Any:
    """A staff user in the group of `role` (crm, analyst, agent). The password must pass the
    project's validators; an existing username is an error (nothing is changed)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.contrib.auth.password_validation import validate_password

    group_name = role_group(role)
    user_model = get_user_model()
    if user_model.objects.filter(username=username).exists():
        raise ValueError(f"a user named {username!r} already exists")
    user = user_model(username=username, email=email, is_staff=True)
    validate_password(password, user)  # raises ValidationError naming each rule broken
    with transaction.atomic():
        campaign_groups_ensure()
        user.set_password(password)
        user.save()
        user.groups.add(Group.objects.get(name=group_name))
    return user


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
