"""The campaign API through URL routing, API-key auth, scopes and serializers: responses,
coupons (list, show, redeem), signed provider webhooks and the uplift endpoint."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.test import Client
from rest_framework.test import APIClient

from campaigns.channels.sms import webhook_signature
from campaigns.models import Campaign, Coupon, Intervention, Response
from campaigns.services.dispatch import campaign_dispatch
from customers.services import api_client_create
from tests.campaigns.conftest import NOON, interventions_of, make_campaign, make_customers

pytestmark = pytest.mark.django_db


@pytest.fixture
def campaign(sent_campaign: Campaign) -> Campaign:
    return sent_campaign


def rows(campaign: Campaign, arm: str) -> list[Intervention]:
    return interventions_of(campaign, arm)


def item(intervention: Intervention, kind: str, key: str, **extra: Any) -> dict[str, Any]:
    return {
        "intervention": intervention.pk,
        "kind": kind,
        "occurred_at": (NOON + timedelta(hours=2)).isoformat(),
        "idempotency_key": key,
        **extra,
    }


def test_a_replayed_batch_changes_nothing_and_is_marked_as_replay(
    api: APIClient, campaign: Campaign
) -> None:
    treated = rows(campaign, "treatment")
    control = rows(campaign, "control")[0]
    batch = [
        item(treated[0], "delivered", "k1"),
        item(treated[1], "opened", "k2"),
        {
            "campaign": campaign.pk,
            "customer": control.customer.external_id,
            "kind": "converted",
            "occurred_at": (NOON + timedelta(days=3)).isoformat(),
            "revenue": "42.50",
            "order_external_id": "shop-1",
            "idempotency_key": "k3",
        },
    ]
    first = api.post("/api/v1/responses", batch, format="json")
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["created"] == 3 and body["replayed"] == 0
    assert [r["replay"] for r in body["results"]] == [False, False, False]
    assert body["results"][2]["intervention"] == control.pk  # resolved by campaign + customer
    treated[0].refresh_from_db()
    assert treated[0].status == "delivered"
    before = list(Response.objects.order_by("pk").values())

    again = api.post("/api/v1/responses", batch, format="json")
    assert again.status_code == 200
    replay = again.json()
    assert replay["created"] == 0 and replay["replayed"] == 3
    assert [r["replay"] for r in replay["results"]] == [True, True, True]
    assert [r["id"] for r in replay["results"]] == [r["id"] for r in body["results"]]
    assert list(Response.objects.order_by("pk").values()) == before

    # A replay with different content is a conflict that names the key and the fields.
    changed = api.post("/api/v1/responses", item(treated[1], "clicked", "k2"), format="json")
    assert changed.status_code == 409
    error = changed.json()["error"]
    assert error["code"] == "idempotency_conflict"
    assert error["details"][0]["field"] == "idempotency_key"
    assert "'k2'" in error["details"][0]["message"] and "kind" in error["details"][0]["message"]
    assert list(Response.objects.order_by("pk").values()) == before


def test_a_key_replayed_in_a_batch_with_new_content_writes_nothing_of_the_batch(
    api: APIClient, campaign: Campaign
) -> None:
    treated = rows(campaign, "treatment")
    first = api.post("/api/v1/responses", item(treated[0], "opened", "a"), format="json")
    assert first.status_code == 201
    batch = [item(treated[1], "opened", "fresh"), item(treated[0], "opened", "a", revenue="5")]
    reply = api.post("/api/v1/responses", batch, format="json")
    assert reply.status_code == 409 and reply.json()["error"]["details"][0]["index"] == 1
    assert "revenue" in reply.json()["error"]["details"][0]["message"]
    assert not Response.objects.filter(idempotency_key="fresh").exists()


def test_two_clients_use_the_same_idempotency_key_independently(
    api: APIClient, campaign: Campaign
) -> None:
    treated = rows(campaign, "treatment")
    _other, other_key = api_client_create(name="other-client")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Api-Key {other_key}")
    mine = api.post("/api/v1/responses", item(treated[0], "opened", "shared"), format="json")
    theirs = other.post("/api/v1/responses", item(treated[1], "clicked", "shared"), format="json")
    assert mine.status_code == theirs.status_code == 201, theirs.content
    assert theirs.json()["results"][0]["intervention"] == treated[1].pk
    assert Response.objects.filter(idempotency_key="shared").count() == 2


def test_the_database_keeps_one_response_per_client_and_key(campaign: Campaign) -> None:
    treated = rows(campaign, "treatment")[0]
    client, _key = api_client_create(name="db-client")
    fields = {"intervention": treated, "kind": "opened", "occurred_at": NOON}
    Response.objects.create(client=client, idempotency_key="x", **fields)
    Response.objects.create(client=None, idempotency_key="x", **fields)
    for owner in (client, None):
        with pytest.raises(IntegrityError), transaction.atomic():
            Response.objects.create(client=owner, idempotency_key="x", **fields)


def test_a_bad_item_rejects_the_whole_batch_naming_every_bad_index(
    api: APIClient, campaign: Campaign
) -> None:
    treated = rows(campaign, "treatment")
    batch = [
        item(treated[0], "delivered", "ok-1"),
        item(treated[1], "teleported", "bad-kind"),
        {
            "intervention": 999999,
            "kind": "opened",
            "occurred_at": NOON.isoformat(),
            "idempotency_key": "unknown",
        },
        item(treated[2], "opened", "ok-2", revenue="ten"),
        {"kind": "opened", "occurred_at": NOON.isoformat(), "idempotency_key": "nobody"},
    ]
    response = api.post("/api/v1/responses", batch, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_items"
    by_index = {(d["index"], d["field"]) for d in error["details"]}
    assert {(1, "kind"), (3, "revenue"), (4, "intervention")} <= by_index
    assert not Response.objects.exists()
    # Fields valid, intervention unknown: named too, and still nothing written.
    response = api.post("/api/v1/responses", [batch[0], batch[2]], format="json")
    assert response.status_code == 400
    [detail] = response.json()["error"]["details"]
    assert detail["index"] == 1 and "unknown intervention" in detail["message"]
    assert not Response.objects.exists()


def test_the_responses_api_needs_the_responses_scope(api_key: str, campaign: Campaign) -> None:
    _client, key = api_client_create(name="reader", scopes=["customers:read"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    treated = rows(campaign, "treatment")[0]
    assert (
        client.post("/api/v1/responses", [item(treated, "opened", "x")], format="json").status_code
        == 403
    )
    assert APIClient().post("/api/v1/responses", [], format="json").status_code == 401


def test_redeeming_a_coupon_twice_is_refused(api: APIClient, campaign: Campaign) -> None:
    coupon = Coupon.objects.filter(intervention__campaign=campaign).first()
    assert coupon is not None
    url = f"/api/v1/coupons/{coupon.code}/redeem"
    first = api.post(url, {"order_external_id": "A-1", "amount": "80.00"}, format="json")
    assert first.status_code == 201, first.content
    assert first.json()["discount"] == "12.00"  # 15% of 80
    assert first.json()["currency"] == "EUR"  # RETENTION_CURRENCY, the amounts' currency
    redeemed = Response.objects.get(kind="redeemed")
    assert redeemed.intervention_id == coupon.intervention_id and redeemed.revenue == Decimal("80")

    second = api.post(url, {"order_external_id": "B-2", "amount": "30.00"}, format="json")
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "coupon_already_redeemed"
    coupon.refresh_from_db()
    assert coupon.redeemed_order_external_id == "A-1" and coupon.redeemed_amount == Decimal("80")
    assert Response.objects.filter(kind="redeemed").count() == 1

    # The same order again is a retry: the original result, marked as a replay.
    retry = api.post(url, {"order_external_id": "A-1", "amount": "80.00"}, format="json")
    assert retry.status_code == 200 and retry.json()["replay"] is True
    assert Response.objects.filter(kind="redeemed").count() == 1


def test_expired_and_unknown_coupons_are_refused(api: APIClient, campaign: Campaign) -> None:
    coupon = Coupon.objects.filter(intervention__campaign=campaign).first()
    assert coupon is not None
    late = (coupon.expires_at + timedelta(days=1)).isoformat()
    response = api.post(
        f"/api/v1/coupons/{coupon.code}/redeem",
        {"order_external_id": "A-1", "amount": "10", "redeemed_at": late},
        format="json",
    )
    assert response.status_code == 409 and response.json()["error"]["code"] == "coupon_expired"
    missing = api.post(
        "/api/v1/coupons/NOPE-NOPE-NOPE-NOPE/redeem",
        {"order_external_id": "A-1", "amount": "10"},
        format="json",
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def signed(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    return {
        "HTTP_X_RETENTION_TIMESTAMP": stamp,
        "HTTP_X_RETENTION_SIGNATURE": webhook_signature(secret=secret, timestamp=stamp, body=body),
    }


def test_webhooks_reject_bad_signatures_and_record_signed_events(
    settings: Any, campaign: Campaign
) -> None:
    settings.EMAIL_EVENTS_WEBHOOK_SECRET = "email-secret"
    treated = rows(campaign, "treatment")
    body = json.dumps(
        {
            "events": [
                {
                    "id": "ev1",
                    "event": "delivered",
                    "message_id": f"<intervention-{treated[0].pk}@retention.local>",
                    "occurred_at": NOON.isoformat(),
                },
                {
                    "id": "ev2",
                    "event": "bounce",
                    "message_id": f"intervention-{treated[1].pk}",
                    "occurred_at": NOON.isoformat(),
                },
                {
                    "id": "ev3",
                    "event": "open",
                    "message_id": "<someone-else@example.com>",
                    "occurred_at": NOON.isoformat(),
                },
                {
                    "id": "ev4",
                    "event": "processed",
                    "message_id": f"intervention-{treated[0].pk}",
                    "occurred_at": NOON.isoformat(),
                },
            ]
        }
    ).encode()
    client = Client()
    url = "/api/v1/webhooks/email"
    assert client.post(url, body, content_type="application/json").status_code == 401
    forged = signed(body, "wrong-secret")
    assert client.post(url, body, content_type="application/json", **forged).status_code == 403
    stale = signed(body, "email-secret", timestamp=int(time.time()) - 3600)
    assert client.post(url, body, content_type="application/json", **stale).status_code == 403
    tampered = signed(body, "email-secret")
    assert (
        client.post(url, body + b" ", content_type="application/json", **tampered).status_code
        == 403
    )
    assert not Response.objects.exists()

    ok = client.post(url, body, content_type="application/json", **signed(body, "email-secret"))
    assert ok.status_code == 200, ok.content
    assert ok.json() == {
        "received": 4,
        "recorded": 2,
        "replayed": 0,
        "ignored": 1,
        "unknown_message": 1,
    }
    treated[0].refresh_from_db()
    treated[1].refresh_from_db()
    assert treated[0].status == "delivered"
    assert treated[1].status == "failed" and treated[1].reason == "bounced"
    again = client.post(url, body, content_type="application/json", **signed(body, "email-secret"))
    assert again.json()["recorded"] == 0 and again.json()["replayed"] == 2
    assert Response.objects.count() == 2


def test_the_sms_webhook_uses_its_own_secret(settings: Any, campaign: Campaign) -> None:
    settings.EMAIL_EVENTS_WEBHOOK_SECRET = "email-secret"
    settings.SMS_STATUS_WEBHOOK_SECRET = ""
    body = json.dumps({"events": []}).encode()
    response = Client().post(
        "/api/v1/webhooks/sms",
        body,
        content_type="application/json",
        **signed(body, "email-secret"),
    )
    assert response.status_code == 403  # no SMS secret configured: every request is refused


def test_the_uplift_endpoint_needs_the_reports_scope_and_returns_the_report(
    campaign: Campaign,
) -> None:
    url = f"/api/v1/campaigns/{campaign.pk}/uplift"
    assert APIClient().get(url).status_code == 401
    _c, writer = api_client_create(name="writer", scopes=["responses:write"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {writer}")
    assert client.get(url).status_code == 403
    _c, reader = api_client_create(name="reports", scopes=["reports:read"])
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {reader}")
    response = client.get(url)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "interim"
    assert body["campaign"]["id"] == campaign.pk
    overall = body["overall"]
    assert overall["treatment"]["n"] + overall["control"]["n"] == 30
    for key in ("difference", "ci_low", "ci_high", "p_value", "relative_lift"):
        assert key in overall["retention"]
    assert {"estimate", "ci_low", "ci_high"} <= set(overall["incremental_revenue"])
    assert "roi" in overall and "cost" in overall
    assert [g["group"] for g in body["by_tier"]] == ["critical"]
    assert body["curve"]["days"][-1] == campaign.attribution_window_days
    assert client.get("/api/v1/campaigns/999999/uplift").status_code == 404
    # The stable key names the same campaign as the id.
    by_key = client.get(f"/api/v1/campaigns/{campaign.key}/uplift")
    assert by_key.status_code == 200 and by_key.json()["campaign"]["id"] == campaign.pk
    missing = client.get("/api/v1/campaigns/no-such-campaign/uplift")
    assert missing.status_code == 404 and "no-such-campaign" in missing.json()["error"]["message"]


def test_the_new_endpoints_are_in_the_openapi_schema() -> None:
    schema = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in (
        "/api/v1/responses",
        "/api/v1/coupons/{code}/redeem",
        "/api/v1/campaigns/{campaign}/uplift",
        "/api/v1/webhooks/email",
    ):
        assert path in text


def test_coupons_are_exposed_through_the_api(api: Any, email_rule: dict[str, Any]) -> None:
    make_customers(5)
    campaign_dispatch(campaign=make_campaign(rules=[email_rule], control_percentage=0), now=NOON)
    coupon = Coupon.objects.select_related("customer").first()
    assert coupon is not None
    listed = api.get(f"/api/v1/customers/{coupon.customer.external_id}/coupons")
    assert listed.status_code == 200
    assert [c["code"] for c in listed.json()] == [coupon.code]
    assert listed.json()[0]["campaign"] == "Win-back"
    assert listed.json()[0]["currency"] == "EUR"
    one = api.get(f"/api/v1/coupons/{coupon.code.lower()}")
    assert one.status_code == 200 and one.json()["customer"] == coupon.customer.external_id
    missing = api.get("/api/v1/coupons/NOPE-NOPE")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_the_coupon_api_needs_the_read_scope(email_rule: dict[str, Any]) -> None:
    from rest_framework.test import APIClient

    from customers.services import api_client_create

    _client, key = api_client_create(name="writer", scopes=["customers:write"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert client.get("/api/v1/coupons/ABCD").status_code == 403
