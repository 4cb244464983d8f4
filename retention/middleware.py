"""Request guards that must act before Django reads a body."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from common.api import error_body


class ApiBodySizeLimitMiddleware:
    """Answer 413 with the API's JSON error body when an /api/ request is too large."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            limit = settings.API_MAX_BODY_BYTES
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit:
                return JsonResponse(
                    error_body(
                        "payload_too_large",
                        f"The request body is {length} bytes; the limit is {limit} bytes.",
                    ),
                    status=413,
                )
        return self.get_response(request)
