"""No 500s on bad input: every input class found by fuzzing (issue 12, points 5 and 12) gets
the API's JSON 400 naming the field, and nothing is written; unknown paths and undeclared
methods under /api/ answer in the same JSON error shape."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from campaigns.models import Campaign, Response
from customers.models import Consent, Customer, Event, Order
from tests.campaigns.conftest import (  # noqa: F401 (fixtures)
    NOON,
    email_rule,
    interventions_of,
    sent_campaign,
)

pytestmark = pytest.mark.django_db

CUSTOMER = {"external_id": "c-new", "name": "Ann"}
ORDER = {"external_id": "o-1", "customer": "c1", "placed_at": "2026-01-02T10:00:00Z", "amount": "5"}
EVENT = {
    "external_id": "e-1",
    "customer": "c1",
    "kind": "visit",
    "occurred_at": "2026-01-02T10:00:00Z",
}

CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("customers", "attributes as a list", {**CUSTOMER, "attributes": [1, 2]}, "attributes"),
    (
        "customers",
        "attributes as a list of objects",
        {**CUSTOMER, "attributes": [{}, {}]},
        "attributes",
    ),
    ("events", "properties as a list", {**EVENT, "properties": ["a", "b", "c"]}, "properties"),
    ("customers", "NUL in a name", {**CUSTOMER, "name": "A\x00nn"}, "name"),
    ("customers", "NUL in an external id", {**CUSTOMER, "external_id": "c\x00"}, "external_id"),
    ("customers", "lone surrogate in a name", {**CUSTOMER, "name": "A\ud800"}, "name"),
    (
        "customers",
        "NUL inside attributes",
        {**CUSTOMER, "attributes": {"k": "v\x00"}},
        "attributes",
    ),
    (
        "customers",
        "surrogate in an attribute key",
        {**CUSTOMER, "attributes": {"\ud800": 1}},
        "attributes",
    ),
    ("events", "NUL in a kind", {**EVENT, "kind": "vi\x00sit"}, "kind"),
    (
        "events",
        "surrogate inside properties",
        {**EVENT, "properties": {"a": ["\udfff"]}},
        "properties",
    ),
    ("orders", "amount Infinity", {**ORDER, "amount": "Infinity"}, "amount"),
    ("orders", "amount inf", {**ORDER, "amount": "inf"}, "amount"),
    ("orders", "amount NaN", {**ORDER, "amount": "NaN"}, "amount"),
    ("orders", "amount 1e10", {**ORDER, "amount": 1e10}, "amount"),
    ("orders", "amount 1e15 as text", {**ORDER, "amount": "1e15"}, "amount"),
    ("orders", "discount 1e12", {**ORDER, "discount_amount": "1e12"}, "discount_amount"),
    ("orders", "item_count 2**31", {**ORDER, "item_count": 2**31}, "item_count"),
    ("orders", "item_count huge", {**ORDER, "item_count": 10**30}, "item_count"),
    ("customers", "external_id as a list", {**CUSTOMER, "external_id": ["a", "b"]}, "external_id"),
    ("customers", "external_id as an object", {**CUSTOMER, "external_id": {"a": 1}}, "external_id"),
    ("orders", "customer as a list", {**ORDER, "customer": ["c1"]}, "customer"),
    ("customers", "name as an object", {**CUSTOMER, "name": {"first": "A"}}, "name"),
    ("orders", "placed_at now", {**ORDER, "placed_at": "now"}, "placed_at"),
    ("orders", "placed_at today", {**ORDER, "placed_at": "today"}, "placed_at"),
    ("orders", "placed_at a year", {**ORDER, "placed_at": "2026"}, "placed_at"),
    (
        "orders",
        "placed_at a date without a time",
        {**ORDER, "placed_at": "2026-01-02"},
        "placed_at",
    ),
    ("events", "occurred_at tomorrow", {**EVENT, "occurred_at": "tomorrow"}, "occurred_at"),
    ("customers", "signup_date today", {**CUSTOMER, "signup_date": "today"}, "signup_date"),
]


def written() -> tuple[int, ...]:
    return (
        Customer.objects.count(),
        Order.objects.count(),
        Event.objects.count(),
        Consent.objects.count(),
        Response.objects.count(),
    )


@pytest.mark.parametrize(("kind", "case", "item", "field"), CASES, ids=[c[1] for c in CASES])
def test_bad_bulk_input_is_a_json_400_naming_the_field_and_writes_nothing(
    api: APIClient, kind: str, case: str, item: dict[str, Any], field: str
) -> None:
    assert (
        api.post("/api/v1/customers/bulk", [{"external_id": "c1"}], format="json").status_code
        == 200
    )
    before = written()
    # Sent as escaped JSON: a lone surrogate arrives as the escape "\\ud800", as from a client.
    body = json.dumps([item])
    reply = api.post(f"/api/v1/{kind}/bulk", body, content_type="application/json")
    assert reply.status_code == 400, (case, reply.content[:300])
    details = reply.json()["error"]["details"]
    assert field in {d["field"] for d in details}, details
    assert written() == before


RESPONSE_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("NUL in the payload", {"payload": {"note": "a\x00"}}, "payload"),
    ("surrogate in a payload key", {"payload": {"\ud800": 1}}, "payload"),
    ("payload as a list", {"payload": [1, 2]}, "payload"),
    ("NUL in the key", {"idempotency_key": "k\x00"}, "idempotency_key"),
    ("revenue Infinity", {"revenue": "Infinity"}, "revenue"),
    ("revenue 1e10", {"revenue": "1e10"}, "revenue"),
    ("occurred_at now", {"occurred_at": "now"}, "occurred_at"),
    ("an unknown field", {"colour": "blue"}, "colour"),
]


@pytest.mark.parametrize(
    ("case", "change", "field"), RESPONSE_CASES, ids=[c[0] for c in RESPONSE_CASES]
)
def test_bad_response_input_is_a_json_400_naming_the_field_and_writes_nothing(
    api: APIClient,
    sent_campaign: Campaign,  # noqa: F811 (the fixture imported above)
    case: str,
    change: dict[str, Any],
    field: str,
) -> None:
    treated = interventions_of(sent_campaign, "treatment")[0]
    item = {
        "intervention": treated.pk,
        "kind": "opened",
        "occurred_at": (NOON + timedelta(hours=1)).isoformat(),
        "idempotency_key": "k1",
        **change,
    }
    before = written()
    body = json.dumps([item])
    reply = api.post("/api/v1/responses", body, content_type="application/json")
    assert reply.status_code == 400, (case, reply.content[:300])
    assert field in {d["field"] for d in reply.json()["error"]["details"]}
    assert written() == before


def test_a_future_consent_and_bad_characters_in_consent_are_json_400s(api: APIClient) -> None:
    assert (
        api.post("/api/v1/customers/bulk", [{"external_id": "c1"}], format="json").status_code
        == 200
    )
    reply = api.put(
        "/api/v1/customers/c1/consent",
        {"channel": "email", "status": "revoked", "source": "a\x00"},
        format="json",
    )
    assert reply.status_code == 400 and "source" in {
        d["field"] for d in reply.json()["error"]["details"]
    }
    assert not Consent.objects.exists()


def test_deeply_nested_json_is_a_json_400(api: APIClient) -> None:
    body = "[" * 100_000 + "]" * 100_000
    reply = api.post("/api/v1/customers/bulk", body, content_type="application/json")
    assert reply.status_code == 400 and reply.json()["error"]["code"]


@pytest.mark.parametrize(
    "path", ["/api/v1/nothing-here", "/api/v1/customers/nobody", "/api/v1/coupons/NOPE/"]
)
def test_unknown_paths_under_the_api_answer_the_json_error_shape(api: APIClient, path: str) -> None:
    reply = api.get(path)
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("delete", "/api/v1/customers/bulk"),
        ("get", "/api/v1/orders/bulk"),
        ("patch", "/api/v1/customers/c1/consent"),
        ("put", "/api/v1/responses"),
    ],
)
def test_undeclared_methods_are_405_in_the_json_error_shape(
    api: APIClient, method: str, path: str
) -> None:
    reply = getattr(api, method)(path, {}, format="json")
    assert reply.status_code == 405, reply.content[:200]
    assert reply.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    "path", ["/api/v1/customers/bulk", "/api/v1/orders/bulk", "/api/v1/responses"]
)
def test_an_empty_list_valid_by_the_schema_is_a_no_op(api: APIClient, path: str) -> None:
    reply = api.post(path, [], format="json")
    assert reply.status_code == 200, reply.content[:200]
    assert reply.json()["received"] == 0
    assert written() == (0, 0, 0, 0, 0)


@pytest.mark.parametrize("body", ['"text"', "42", "null", '{"items": 5}'])
def test_a_body_that_is_no_list_is_a_json_400(api: APIClient, body: str) -> None:
    for path in ("/api/v1/customers/bulk", "/api/v1/responses"):
        reply = api.post(path, body, content_type="application/json")
        assert reply.status_code == 400 and reply.json()["error"]["code"], (path, body)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/customers/a%00b",
        "/api/v1/customers/a%00b/coupons",
        "/api/v1/customers/a%00b/score",
        "/api/v1/coupons/%00",
    ],
)
def test_a_nul_in_a_path_is_the_json_404(api: APIClient, path: str) -> None:
    reply = api.get(path)
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"
    put = api.put("/api/v1/customers/a%00b/consent", {"channel": "email", "status": "revoked"})
    assert put.status_code == 404 and not Consent.objects.exists()


def test_an_unknown_field_in_consent_is_a_json_400_naming_it(api: APIClient) -> None:
    assert (
        api.post("/api/v1/customers/bulk", [{"external_id": "c1"}], format="json").status_code
        == 200
    )
    reply = api.put(
        "/api/v1/customers/c1/consent",
        {"channel": "email", "status": "revoked", "recorded": "2026-01-01T00:00:00Z"},
        format="json",
    )
    assert reply.status_code == 400
    assert "recorded" in {d["field"] for d in reply.json()["error"]["details"]}
    assert not Consent.objects.exists()
