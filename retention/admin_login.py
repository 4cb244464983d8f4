"""The page a locked-out admin login sees (django-axes calls `lockout_response`): how long the
wait is and whom to ask, instead of a bare status code."""

from __future__ import annotations

from typing import Any

from axes.helpers import get_client_username
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

# 429 Too Many Requests: the request was fine, there were too many of them.
LOCKOUT_STATUS = 429


def lockout_response(
    request: HttpRequest, original_response: Any = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    context = {
        "username": get_client_username(request, credentials) or "",
        "failure_limit": settings.AXES_FAILURE_LIMIT,
        "cooloff_minutes": int(settings.AXES_COOLOFF_TIME.total_seconds() // 60),
        "contact": settings.ADMIN_LOGIN_CONTACT,
        "site_header": "Retention service",
    }
    return render(request, "admin/lockout.html", context, status=LOCKOUT_STATUS)
