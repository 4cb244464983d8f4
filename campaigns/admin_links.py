"""Links on admin pages that only point where the reader may go: a related object is a link
when the user may view it and plain text otherwise, so no role meets a 403 by clicking.

Display methods get the object, not the request; the mixin keeps the request in a context
variable (per thread and per task, unlike an attribute of the shared ModelAdmin) while the page
renders, which is why it renders the response before leaving the view.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

_current_request: ContextVar[HttpRequest | None] = ContextVar("admin_request", default=None)


def may_view(request: HttpRequest | None, model: type[Model] | Model) -> bool:
    if request is None:
        return False
    meta = model._meta
    return bool(request.user.has_perm(f"{meta.app_label}.view_{meta.model_name}"))


def admin_link(obj: Model | None, text: str | None = None) -> SafeString | str:
    """`obj` as a link to its admin page when the current user may view it, else its name."""
    if obj is None:
        return "—"
    label = text if text is not None else str(obj)
    if not may_view(_current_request.get(), obj):
        return label
    meta = obj._meta
    try:
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    except NoReverseMatch:  # no admin page for this model
        return label
    return format_html('<a href="{}">{}</a>', url, label)


def current_request() -> HttpRequest | None:
    return _current_request.get()


def _render_within(request: HttpRequest, view: Callable[[], HttpResponse]) -> HttpResponse:
    token = _current_request.set(request)
    try:
        response = view()
        if isinstance(response, TemplateResponse) and not response.is_rendered:
            response.render()
        return response
    finally:
        _current_request.reset(token)


class PermittedLinksAdmin(admin.ModelAdmin):
    """A ModelAdmin whose display methods may call `admin_link` (change form and list)."""

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        parent = super().changeform_view
        return _render_within(request, lambda: parent(request, object_id, form_url, extra_context))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        parent = super().changelist_view
        return _render_within(request, lambda: parent(request, extra_context))
