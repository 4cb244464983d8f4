"""Public pages of campaigns: the one-click unsubscribe link of campaign emails; and the
project's 403 page, in words and inside the admin's frame (retention/urls.py handler403)."""

from __future__ import annotations

from django.contrib import admin
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from campaigns.services.responses import UNSUBSCRIBE_SALT, customer_unsubscribe


@csrf_exempt  # RFC 8058: mail clients POST "List-Unsubscribe=One-Click" without a CSRF token
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a confirmation button (link scanners must not unsubscribe anyone); POST,
    from that button or a mail client's one-click, revokes email consent."""
    try:
        signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return render(request, "campaigns/unsubscribe.html", {"invalid": True}, status=400)
    if request.method == "POST":
        customer_unsubscribe(token=token)
        return render(request, "campaigns/unsubscribe.html", {"done": True})
    return render(request, "campaigns/unsubscribe.html", {"token": token})


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """A refused page says which roles open it and links back home (templates/403.html); the
    admin's context gives it the site's header, the user's tools and their own menu."""
    context = {**admin.site.each_context(request), "exception": str(exception or "")}
    return render(request, "403.html", context, status=403)
