"""One error shape for the whole API: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class BulkValidationError(exceptions.APIException):
    """A bulk request had bad items; `details` names each item's index, field and reason."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    default_code = "invalid_items"
    default_detail = "Some items are invalid; nothing was written."

    def __init__(self, errors: list[dict[str, Any]], message: str | None = None) -> None:
        super().__init__(message or self.default_detail)
        self.errors = errors


_CODES = {
    400: "bad_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "throttled",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return {"error": body}


def error_details(detail: Any) -> list[dict[str, Any]]:
    """A validation error's detail — DRF's nested dicts and lists — as the one shape every error
    body uses: a list of {"field", "message"}, with "index" for an item of a list body, the field
    a dotted path ("attributes.age") and "" for the body as a whole."""
    found: list[dict[str, Any]] = []

    def walk(value: Any, field: str, index: int | None) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                name = "" if key == "non_field_errors" else str(key)
                walk(inner, f"{field}.{name}" if field and name else field or name, index)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for position, inner in enumerate(value):
                if field or index is not None:
                    walk(inner, f"{field}.{position}" if field else str(position), index)
                else:
                    walk(inner, field, position)
        elif isinstance(value, list):
            for inner in value:
                walk(inner, field, index)
        else:
            item: dict[str, Any] = {"field": field, "message": str(value)}
            if index is not None:
                item = {"index": index, **item}
            found.append(item)

    walk(detail, "", None)
    return found


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every exception of an API view as the one error shape; an unexpected one is logged
    with its traceback and answered as a JSON 500 (never Django's HTML page)."""
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_exception_handler(exc, context)
    if response is None:
        logger.exception("Unhandled API error", exc_info=exc)
        return Response(
            error_body("server_error", "The server failed to handle this request."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, BulkValidationError):
        response.data = error_body(exc.default_code, str(exc.detail), exc.errors)
        return response
    code = _CODES.get(response.status_code, "error")
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body("invalid", "The request is invalid.", error_details(exc.detail))
    elif isinstance(exc, exceptions.APIException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        response.data = error_body(getattr(exc, "default_code", code) or code, message)
    return response


@csrf_exempt  # an API client sends no CSRF token: a POST here must get this JSON, not a 403 page
def api_not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Any path under /api/ that no endpoint has: the JSON 404, not Django's page. When the
    path with (or without) a trailing slash is an endpoint, the message names it."""
    message = "No API endpoint has this path."
    other = request.path[:-1] if request.path.endswith("/") else request.path + "/"
    try:
        match = resolve(other)
    except Resolver404:
        match = None
    if match is not None and match.func is not api_not_found:
        message += f" Did you mean {other} ?"
    return JsonResponse(error_body("not_found", message), status=404)


class PathSegmentConverter:
    """A URL segment without a NUL (PostgreSQL cannot compare text holding one): such a path
    matches no endpoint and gets the JSON 404. Registered as `<segment:…>` by the root URLs."""

    regex = "[^/\x00]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


def unknown_fields_refuse(*, data: Any, fields: Any) -> None:
    """A JSON object naming a field the endpoint does not have is a 400 (as in bulk items),
    so a misspelt field is never silently dropped."""
    if isinstance(data, dict):
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise exceptions.ValidationError({name: ["unknown field"] for name in unknown})
