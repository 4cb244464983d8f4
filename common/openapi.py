"""The OpenAPI schema's error responses, documented in one place for every operation.

Each API operation lists the errors it can answer, all with the one error body of
`common.api.error_body` (the `Error` component):

- 400 where the operation takes a request body or query parameters (validation);
- 401 and 403 everywhere (no or bad credentials; a client without the scope, a bad signature);
- 404 where the path names something (a customer, a coupon, a campaign);
- 409 where the view declares it (idempotency conflicts, a coupon already redeemed);
- 413 and 415 where the operation takes a request body (too large; not JSON);
- 429 where the view is throttled.

A method a path does not have is answered 405 with the same body; OpenAPI lists operations,
not the methods a path lacks, so that answer is described in docs/api.md instead.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class FieldProblemOut(serializers.Serializer):
    index = serializers.IntegerField(
        required=False, help_text="The item's position, for an item of a list body"
    )
    field = serializers.CharField(help_text='Dotted path of the field; "" for the whole body')
    message = serializers.CharField()

    class Meta:
        ref_name = "FieldProblem"


class ErrorDetailOut(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable, e.g. invalid, not_found, throttled")
    message = serializers.CharField(help_text="What went wrong, for a person")
    details = FieldProblemOut(
        many=True, required=False, help_text="Each bad field (and item of a list body)"
    )

    class Meta:
        ref_name = "ErrorDetail"


class ErrorOut(serializers.Serializer):
    error = ErrorDetailOut()

    class Meta:
        ref_name = "Error"


ERROR_DESCRIPTIONS = {
    400: "The request is invalid (every bad field, or every bad item's index, is named).",
    401: "No credentials, or a malformed, unknown or revoked API key (or a missing signature).",
    403: "The API client lacks the scope this operation needs (or the signature is invalid).",
    404: "Nothing has this id or code (or no endpoint has this path).",
    409: "The request conflicts with what was recorded before; nothing was written.",
    413: "The request body is larger than the limit (API_MAX_BODY_BYTES).",
    415: "The request body is not JSON (Content-Type must be application/json).",
    429: "Too many requests from this API client; retry after the Retry-After seconds.",
}
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def error_statuses(
    *, method: str, path: str, has_query: bool, throttled: bool, declared: set[int]
) -> list[int]:
    """The error statuses one operation documents (see the module docstring)."""
    has_body = method in BODY_METHODS
    statuses = {401, 403} | {s for s in declared if s >= 400}
    if has_body or has_query:
        statuses.add(400)
    if "{" in path:
        statuses.add(404)
    if has_body:
        statuses |= {413, 415}
    if throttled:
        statuses.add(429)
    return sorted(statuses)


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's AutoSchema, adding the error responses of `error_statuses`."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        declared = {int(code) for code in responses if code.isdigit()}
        has_query = any(p.get("in") == "query" for p in self._get_parameters())
        for status in error_statuses(
            method=self.method,
            path=self.path,
            has_query=has_query,
            throttled=bool(self.view.get_throttles()),
            declared=declared,
        ):
            current = responses.get(str(status))
            if current is None or not current.get("content"):
                description = (current or {}).get("description") or ERROR_DESCRIPTIONS.get(
                    status, "Error."
                )
                responses[str(status)] = self._get_response_for_code(
                    OpenApiResponse(response=ErrorOut, description=description),
                    str(status),
                    direction=direction,
                )
        return responses
