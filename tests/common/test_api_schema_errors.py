"""The served OpenAPI schema documents every operation's error responses with the one error
body, and the security scheme says how to send the key (Api-Key or Bearer)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from rest_framework.test import APIClient

ERROR_REF = "#/components/schemas/Error"
WEBHOOKS = {"/api/v1/webhooks/email", "/api/v1/webhooks/sms"}
IDEMPOTENT = {("post", "/api/v1/responses"), ("post", "/api/v1/coupons/{code}/redeem")}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    response = APIClient().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return dict(json.loads(response.content))


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
    ]


def expected_errors(method: str, path: str) -> set[str]:
    expected = {"401", "403"}
    if "{" in path:
        expected.add("404")
    if method in {"post", "put", "patch"}:
        expected |= {"400", "413", "415"}
    if path not in WEBHOOKS:  # the webhooks are signed, not throttled per client
        expected.add("429")
    if (method, path) in IDEMPOTENT:
        expected.add("409")
    return expected


def test_every_operation_documents_its_errors_with_the_one_error_body(
    schema: dict[str, Any],
) -> None:
    ops = operations(schema)
    assert len(ops) >= 13
    for method, path, operation in ops:
        responses = operation["responses"]
        missing = expected_errors(method, path) - set(responses)
        assert not missing, f"{method.upper()} {path} does not document {sorted(missing)}"
        for code, response in responses.items():
            if code.startswith(("4", "5")):
                body = response["content"]["application/json"]["schema"]
                assert body == {"$ref": ERROR_REF}, f"{method.upper()} {path} {code}: {body}"
                assert response["description"], f"{method.upper()} {path} {code}: no description"


def test_the_error_component_is_the_body_the_api_answers(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert components["Error"]["required"] == ["error"]
    detail = components["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message"}
    assert set(detail["properties"]) == {"code", "message", "details"}


@pytest.mark.django_db
def test_a_real_error_matches_the_documented_error_body(api: APIClient) -> None:
    response = api.get("/api/v1/customers/nobody")
    assert response.status_code == 404
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == "not_found"
    assert set(body["error"]) <= {"code", "message", "details"}


def test_the_api_key_scheme_says_both_ways_to_send_the_key(schema: dict[str, Any]) -> None:
    scheme = schema["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "Authorization")
    assert "Api-Key rk_" in scheme["description"]
    assert "Bearer rk_" in scheme["description"]
