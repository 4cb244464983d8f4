"""The ingestion API: authentication, scopes, atomic bulk upserts, consent, schema."""

from __future__ import annotations

import json

import pytest
from rest_framework.test import APIClient

from customers.authentication import ApiClientRateThrottle
from customers.models import ApiClient as ApiClientModel
from customers.models import Customer, Event, Order
from customers.services import api_client_create

pytestmark = pytest.mark.django_db


def post(api: APIClient, url: str, body: object) -> tuple[int, dict]:
    response = api.post(url, body, format="json")
    return response.status_code, response.json()


def test_requests_without_a_valid_key_get_401() -> None:
    anonymous = APIClient()
    response = anonymous.post("/api/v1/customers/bulk", [{"external_id": "a"}], format="json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response.headers["WWW-Authenticate"].startswith("Api-Key")
    anonymous.credentials(HTTP_AUTHORIZATION="Api-Key rk_000000000000_wrong")
    assert anonymous.get("/api/v1/customers/a").status_code == 401
    assert Customer.objects.count() == 0


def test_the_key_is_stored_only_as_a_hash(api_key: str) -> None:
    client = ApiClientModel.objects.get()
    assert api_key not in json.dumps([client.key_hash, client.key_prefix, client.scopes])
    assert len(client.key_hash) == 64


def test_a_client_without_the_read_scope_cannot_read_customers() -> None:
    _client, key = api_client_create(name="writer", scopes=["customers:write"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert post(api, "/api/v1/customers/bulk", [{"external_id": "a"}])[0] == 200
    response = api.get("/api/v1/customers/a")
    assert response.status_code == 403
    assert "customers:read" in response.json()["error"]["message"]


def test_bulk_upsert_creates_then_updates_then_changes_nothing(api: APIClient) -> None:
    batch = [
        {"external_id": "c1", "email": "one@example.com", "attributes": {"plan": "gold"}},
        {"external_id": "c2", "time_zone": "Europe/Paris", "signup_date": "2024-02-01"},
    ]
    assert post(api, "/api/v1/customers/bulk", batch) == (
        200,
        {"received": 2, "created": 2, "updated": 0, "unchanged": 0},
    )
    assert post(api, "/api/v1/customers/bulk", batch)[1]["unchanged"] == 2  # replay: idempotent
    batch[0]["email"] = "new@example.com"
    assert post(api, "/api/v1/customers/bulk", batch)[1] == {
        "received": 2,
        "created": 0,
        "updated": 1,
        "unchanged": 1,
    }
    assert Customer.objects.get(external_id="c1").email == "new@example.com"
    assert str(Customer.objects.get(external_id="c2").signup_date) == "2024-02-01"


def test_one_bad_item_rejects_the_whole_request_and_names_its_index(api: APIClient) -> None:
    Customer.objects.create(external_id="c1")
    orders = [
        {"external_id": "o1", "customer": "c1", "placed_at": "2024-05-01T10:00:00Z", "amount": 10},
        {
            "external_id": "o2",
            "customer": "c1",
            "placed_at": "2024-05-02T10:00:00Z",
            "amount": "ten",
        },
        {"external_id": "o3", "customer": "c1", "placed_at": "yesterday", "amount": 3},
    ]
    status, body = post(api, "/api/v1/orders/bulk", orders)
    assert status == 400
    assert body["error"]["code"] == "invalid_items"
    details = {(d["index"], d["field"]) for d in body["error"]["details"]}
    assert details == {(1, "amount"), (2, "placed_at")}
    assert Order.objects.count() == 0


def test_orders_for_unknown_customers_are_rejected_atomically(api: APIClient) -> None:
    Customer.objects.create(external_id="c1")
    orders = [
        {"external_id": "o1", "customer": "c1", "placed_at": "2024-05-01T10:00:00Z", "amount": 1},
        {
            "external_id": "o2",
            "customer": "ghost",
            "placed_at": "2024-05-01T10:00:00Z",
            "amount": 1,
        },
    ]
    status, body = post(api, "/api/v1/orders/bulk", orders)
    assert status == 400
    assert body["error"]["details"] == [
        {"index": 1, "field": "customer", "message": "unknown customer 'ghost'"}
    ]
    assert Order.objects.count() == 0


def test_events_bulk_and_unknown_fields(api: APIClient) -> None:
    Customer.objects.create(external_id="c1")
    event = {
        "external_id": "e1",
        "customer": "c1",
        "kind": "complaint",
        "occurred_at": "2024-05-01T10:00:00+02:00",
        "properties": {"topic": "billing"},
    }
    assert post(api, "/api/v1/events/bulk", [event])[1]["created"] == 1
    assert Event.objects.get().occurred_at.isoformat() == "2024-05-01T08:00:00+00:00"
    status, body = post(api, "/api/v1/events/bulk", [{**event, "colour": "red"}])
    assert status == 400 and body["error"]["details"][0]["field"] == "colour"


def test_bulk_limits_and_body_size(api: APIClient, settings) -> None:
    status, body = post(
        api, "/api/v1/customers/bulk", [{"external_id": str(i)} for i in range(1001)]
    )
    assert status == 400 and "At most 1000 items" in body["error"]["message"]
    settings.API_MAX_BODY_BYTES = 100
    status, body = post(api, "/api/v1/customers/bulk", [{"external_id": "x" * 200}])
    assert status == 413 and body["error"]["code"] == "payload_too_large"


def test_consent_update_and_customer_read(api: APIClient) -> None:
    Customer.objects.create(external_id="c1", email="c1@example.com")
    before = api.get("/api/v1/customers/c1").json()
    assert before["consent"]["email"] == {"granted": True, "source": "default", "recorded_at": None}
    assert before["consent"]["sms"]["granted"] is False
    response = api.put(
        "/api/v1/customers/c1/consent",
        {"channel": "email", "status": "revoked", "source": "preference_center"},
        format="json",
    )
    assert response.status_code == 200 and response.json()["granted"] is False
    after = api.get("/api/v1/customers/c1").json()
    assert after["consent"]["email"]["source"] == "preference_center"
    assert api.get("/api/v1/customers/nobody").status_code == 404
    bad = api.put("/api/v1/customers/c1/consent", {"channel": "fax", "status": "x"}, format="json")
    assert bad.status_code == 400 and {d["field"] for d in bad.json()["error"]["details"]} == {
        "channel",
        "status",
    }


def test_requests_are_throttled_per_client(api: APIClient, monkeypatch) -> None:
    monkeypatch.setattr(ApiClientRateThrottle, "THROTTLE_RATES", {"api_client": "3/min"})
    from django.core.cache import cache

    cache.clear()
    codes = [api.get("/api/v1/customers/none").status_code for _ in range(4)]
    assert codes == [404, 404, 404, 429]


def test_the_api_keeps_answering_while_the_throttle_cache_is_down(
    api: APIClient, settings, caplog
) -> None:
    """A Redis outage must not turn every API call into a 500 (issue 12, point 3): with the
    cache on a port nothing listens on, requests go through unthrottled and the skip is logged."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        }
    }
    status, body = post(api, "/api/v1/customers/bulk", [{"external_id": "during-outage"}])
    assert status == 200 and body["created"] == 1
    assert api.get("/api/v1/customers/during-outage").status_code == 200
    assert "API throttle skipped" in caplog.text


def test_schema_is_a_valid_openapi_document_and_docs_are_served() -> None:
    from drf_spectacular.validation import validate_schema

    client = APIClient()
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    validate_schema(schema)
    assert "/api/v1/orders/bulk" in schema["paths"]
    assert client.get("/api/docs/").status_code == 200


def test_an_order_with_lines_takes_its_totals_from_them(api: APIClient) -> None:
    from decimal import Decimal

    from customers.models import OrderLine, Product

    Customer.objects.create(external_id="c1")
    order = {
        "external_id": "o1",
        "customer": "c1",
        "placed_at": "2024-05-01T10:00:00Z",
        "lines": [
            {"product": "A1", "product_name": "Red mug", "quantity": 2, "unit_price": "3.50"},
            {"product": "B2", "quantity": 1, "unit_price": "5"},
        ],
    }
    status, body = post(api, "/api/v1/orders/bulk", [order])
    assert status == 200, body
    stored = Order.objects.get(external_id="o1")
    assert (stored.amount, stored.item_count) == (Decimal("12.00"), 3)
    assert Product.objects.get(external_id="A1").name == "Red mug"
    # Posting it again rewrites nothing.
    assert post(api, "/api/v1/orders/bulk", [order])[1]["unchanged"] == 1
    # Posting the order again with one line replaces its lines.
    order["lines"] = [{"product": "B2", "quantity": 4, "unit_price": "5"}]
    assert post(api, "/api/v1/orders/bulk", [order])[0] == 200
    stored.refresh_from_db()
    assert (stored.amount, stored.item_count) == (Decimal("20.00"), 4)
    assert list(OrderLine.objects.values_list("line_no", "product__external_id")) == [(1, "B2")]


def test_a_bad_line_names_its_order_and_line(api: APIClient) -> None:
    Customer.objects.create(external_id="c1")
    order = {
        "external_id": "o1",
        "customer": "c1",
        "placed_at": "2024-05-01T10:00:00Z",
        "lines": [{"product": "A1", "quantity": 1, "unit_price": "1"}, {"product": "B2"}],
    }
    status, body = post(api, "/api/v1/orders/bulk", [{**order, "external_id": "o0"}, order])
    assert status == 400
    fields = {(d["index"], d["field"]) for d in body["error"]["details"]}
    assert fields == {
        (0, "lines[1].quantity"),
        (0, "lines[1].unit_price"),
        (1, "lines[1].quantity"),
        (1, "lines[1].unit_price"),
    }
    assert Order.objects.count() == 0
