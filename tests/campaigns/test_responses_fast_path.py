"""The responses API's fast path (issue 12, load): the common item checked without the
serializer, one INSERT for the batch, results rendered without a serializer pass, the API
client cached per process, the sliding-window throttle. Each must behave exactly as the slow
path it stands in for: same values, same errors, same idempotency, same body."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from campaigns.apis import ResponseIn, ResponsesOut, _PlainItemCheck, _results_representation
from campaigns.models import Campaign, Intervention, Response
from campaigns.services.responses import (
    ResponseItem,
    ResponseResult,
    ResponseRow,
    responses_record_batch,
)
from customers.authentication import ApiClientRateThrottle, api_client_cache_clear
from customers.models import ApiClient
from customers.services import api_client_create
from tests.campaigns.conftest import NOON, interventions_of

pytestmark = pytest.mark.django_db

LATER = (NOON + timedelta(hours=2)).isoformat()


def item(intervention: Intervention, key: str, **extra: Any) -> dict[str, Any]:
    return {
        "intervention": intervention.pk,
        "kind": "opened",
        "occurred_at": LATER,
        "idempotency_key": key,
        **extra,
    }


def post(api: APIClient, body: Any) -> Any:
    return api.post("/api/v1/responses", body, format="json")


@pytest.mark.parametrize(
    "value",
    [
        {"intervention": 7, "kind": "opened", "occurred_at": LATER, "idempotency_key": "k"},
        {
            "intervention": 7,
            "kind": "clicked",
            "occurred_at": "2026-11-30T10:00:00+02:00",
            "idempotency_key": "a key",
        },
        {
            "intervention": 7,
            "kind": "delivered",
            "occurred_at": "2026-11-30T10:00:00",
            "idempotency_key": "k" * 200,
        },
    ],
)
def test_an_item_the_fast_check_accepts_equals_what_the_serializer_makes(value: Any) -> None:
    fast = _PlainItemCheck().item(value)
    slow = ResponseIn().run_validation(value)
    assert fast == ResponseItem(
        kind=slow["kind"],
        occurred_at=slow["occurred_at"],
        idempotency_key=slow["idempotency_key"],
        intervention_id=slow["intervention"],
    )


@pytest.mark.parametrize(
    "change",
    [
        {"intervention": True},
        {"intervention": "7"},
        {"intervention": 0},
        {"intervention": 2**63},
        {"kind": "fax"},
        {"idempotency_key": " padded "},
        {"idempotency_key": ""},
        {"idempotency_key": "k" * 201},
        {"idempotency_key": "nul\x00"},
        {"idempotency_key": "lone \ud800"},
        {"occurred_at": "now"},
        {"occurred_at": 1700000000},
        {"revenue": "1.00"},
        {"extra": 1},
    ],
)
def test_anything_else_is_left_to_the_serializer(change: dict[str, Any]) -> None:
    value = {"intervention": 7, "kind": "opened", "occurred_at": LATER, "idempotency_key": "k"}
    assert _PlainItemCheck().item({**value, **change}) is None


def test_the_rendered_results_equal_the_serializer_output() -> None:
    now = datetime(2026, 11, 30, 12, 0, 1, 123456, tzinfo=UTC)
    rows = [
        ResponseRow(
            id=n,
            intervention_id=10 + n,
            kind="converted" if n else "opened",
            occurred_at=now - timedelta(hours=n),
            revenue=Decimal("42.5") if n else None,
            order_external_id="shop-1" if n else "",
            idempotency_key=f"k{n}",
            created_at=now,
            payload={},
        )
        for n in range(3)
    ]
    results = [ResponseResult(response=row, replay=bool(n % 2)) for n, row in enumerate(rows)]
    fast = _results_representation(results)
    body = {"received": 3, "created": 2, "replayed": 1, "results": fast}
    assert fast[1]["revenue"] == "42.50" and fast[0]["occurred_at"].endswith("Z")
    assert ResponsesOut(body).data["results"] == fast


def test_a_request_costs_the_same_queries_for_one_item_or_a_hundred(
    api: APIClient, sent_campaign: Campaign
) -> None:
    """No per-item query, and the API client is read from the cache after the first request:
    the queries are the interventions check and the insert (plus the transaction's own)."""
    treated = interventions_of(sent_campaign, "treatment")
    assert post(api, item(treated[0], "warm-up")).status_code == 201
    counts = []
    for size in (1, 100):
        body = [item(treated[n % len(treated)], f"q{size}-{n}") for n in range(size)]
        with CaptureQueriesContext(connection) as queries:
            assert post(api, body).status_code == 201
        sql = [q["sql"] for q in queries.captured_queries]
        assert not [q for q in sql if "customers_apiclient" in q], sql
        assert len([q for q in sql if q.startswith("INSERT")]) == 1, sql
        counts.append(len(sql))
    assert counts[0] == counts[1] <= 4
    assert Response.objects.count() == 102


def test_a_batch_mixing_new_and_replayed_keys_writes_the_new_ones_once(
    api: APIClient, sent_campaign: Campaign
) -> None:
    """The one-statement insert meets a key it already holds: it is rolled back and the
    general path answers, so the replay is marked and the new item is written exactly once."""
    treated = interventions_of(sent_campaign, "treatment")
    assert post(api, [item(treated[0], "old")]).status_code == 201
    response = post(api, [item(treated[1], "new"), item(treated[0], "old")])
    body = response.json()
    assert response.status_code == 201 and (body["created"], body["replayed"]) == (1, 1)
    assert [r["replay"] for r in body["results"]] == [False, True]
    assert Response.objects.filter(idempotency_key="new").count() == 1
    assert Response.objects.count() == 2
    changed = post(api, [item(treated[2], "newer"), item(treated[0], "old", kind="clicked")])
    assert changed.status_code == 409
    assert not Response.objects.filter(idempotency_key="newer").exists()


def test_an_unknown_intervention_in_a_fast_batch_writes_nothing(
    api: APIClient, sent_campaign: Campaign
) -> None:
    treated = interventions_of(sent_campaign, "treatment")
    unknown = {**item(treated[0], "b"), "intervention": 10**9}
    response = post(api, [item(treated[0], "a"), unknown])
    assert response.status_code == 400
    assert response.json()["error"]["details"] == [
        {"index": 1, "field": "intervention", "message": f"unknown intervention {10**9}"}
    ]
    assert not Response.objects.exists()


def test_the_service_fast_path_applies_side_effects(sent_campaign: Campaign) -> None:
    treated = interventions_of(sent_campaign, "treatment")[0]
    Intervention.objects.filter(pk=treated.pk).update(status="sent")
    when = NOON + timedelta(hours=1)
    [result] = responses_record_batch(
        items=[
            ResponseItem(
                kind="delivered", occurred_at=when, idempotency_key="d", intervention_id=treated.pk
            )
        ]
    )
    assert isinstance(result.response, ResponseRow) and not result.replay
    treated.refresh_from_db()
    assert treated.status == "delivered" and treated.delivered_at == when


def test_a_revoked_key_is_refused_at_once_in_this_process_and_within_the_ttl_elsewhere(
    settings: Any, sent_campaign: Campaign
) -> None:
    client, key = api_client_create(name="cached", scopes=["responses:write"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    treated = interventions_of(sent_campaign, "treatment")
    assert post(api, item(treated[0], "c1")).status_code == 201
    client.is_active = False
    client.save()  # a save in this process drops the cached client: refused at once
    assert post(api, item(treated[0], "c2")).status_code == 401
    ApiClient.objects.filter(pk=client.pk).update(is_active=True)
    api_client_cache_clear()
    assert post(api, item(treated[0], "c3")).status_code == 201
    # Another process revoking it (no signal here) is seen when the entry expires.
    ApiClient.objects.filter(pk=client.pk).update(is_active=False)
    assert post(api, item(treated[0], "c4")).status_code == 201
    settings.API_CLIENT_CACHE_SECONDS = 0
    api_client_cache_clear()
    assert post(api, item(treated[0], "c5")).status_code == 401


def test_the_throttle_counts_in_redis_and_says_when_to_retry(
    api: APIClient, settings: Any, monkeypatch: Any, require_redis: str
) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": require_redis,
            "KEY_PREFIX": f"throttle-test-{datetime.now(UTC).timestamp()}",
        }
    }
    monkeypatch.setattr(ApiClientRateThrottle, "THROTTLE_RATES", {"api_client": "3/hour"})
    codes = [api.get("/api/v1/customers/none") for _ in range(5)]
    assert [r.status_code for r in codes] == [404, 404, 404, 429, 429]
    assert 0 < int(codes[3]["Retry-After"]) <= 3600
    assert codes[3].json()["error"]["code"] == "throttled"
