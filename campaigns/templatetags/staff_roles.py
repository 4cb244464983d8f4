"""The friendly 403 page's words: which roles open the page that was refused, and the user's own."""

from __future__ import annotations

from typing import Any

from django import template
from django.apps import apps
from django.http import HttpRequest
from django.urls import Resolver404, resolve

from campaigns.roles import role_label, roles_allowed

register = template.Library()


def _admin_model(url_name: str) -> tuple[str, str] | None:
    """(app label, model name) of an admin URL name such as `customers_customer_change` or
    `campaigns_campaign_uplift` (every ModelAdmin URL is named app_model_action)."""
    for model in apps.get_models():
        meta = model._meta
        if url_name.startswith(f"{meta.app_label}_{meta.model_name}_"):
            return meta.app_label, str(meta.model_name)
    return None


@register.simple_tag
def roles_needed(request: HttpRequest) -> list[str]:
    """The roles whose members may view the page at request.path ([] when unknown)."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return []
    found = _admin_model(match.url_name or "")
    if found is None:
        return []
    app_label, model_name = found
    return roles_allowed(app_label=app_label, codename=f"view_{model_name}")


@register.simple_tag
def user_roles(user: Any) -> list[str]:
    if not getattr(user, "is_authenticated", False):
        return []
    names = user.groups.order_by("name").values_list("name", flat=True)
    return [role_label(name) for name in names]
