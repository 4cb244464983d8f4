"""Devices through the API: register or refresh (idempotent by token), the cap that retires the
oldest, DELETE, bad input named field by field, and devices gone with an erased customer."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from rest_framework.test import APIClient

from customers.models import Customer, Device, DeviceStatus
from customers.services import customer_erase

pytestmark = pytest.mark.django_db


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def subscription(endpoint: str) -> dict[str, Any]:
    public = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    keys = {"p256dh": b64url(public), "auth": b64url(os.urandom(16))}
    return {"endpoint": endpoint, "expirationTime": None, "keys": keys}


@pytest.fixture
def customer() -> Customer:
    return Customer.objects.create(external_id="c1", name="Ada", email="ada@example.com")


def url(customer: Customer) -> str:
    return f"/api/v1/customers/{customer.external_id}/devices"


def test_register_then_refresh_is_idempotent_by_token(api: APIClient, customer: Customer) -> None:
    body = {"platform": "web", "subscription": subscription("https://push.example/s/1")}
    first = api.post(url(customer), body, format="json")
    seen_first = Device.objects.get().last_seen_at
    body["subscription"]["keys"] = subscription("https://push.example/s/1")["keys"]
    again = api.post(url(customer), body, format="json")
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    device = Device.objects.get()
    assert device.p256dh == body["subscription"]["keys"]["p256dh"]  # the newer keys
    assert device.last_seen_at > seen_first  # refreshed, not created again
    # An unregistered token that comes back is active again.
    Device.objects.update(status=DeviceStatus.UNREGISTERED, unregistered_reason="410")
    assert api.post(url(customer), body, format="json").json()["status"] == "active"


def test_the_cap_retires_the_oldest(api: APIClient, customer: Customer, settings: Any) -> None:
    settings.PUSH_MAX_DEVICES_PER_CUSTOMER = 2
    ids = [
        api.post(url(customer), {"platform": "android", "token": f"t{n}"}, format="json").json()
        for n in range(3)
    ]
    assert [d["retired"] for d in ids] == [0, 0, 1]
    oldest = Device.objects.get(token="t0")
    assert oldest.status == DeviceStatus.UNREGISTERED
    assert "more than 2 devices" in oldest.unregistered_reason
    assert Device.objects.filter(status=DeviceStatus.ACTIVE).count() == 2


def test_delete(api: APIClient, customer: Customer) -> None:
    device = api.post(url(customer), {"platform": "ios", "token": "x"}, format="json").json()
    assert api.delete(f"{url(customer)}/{device['id']}").status_code == 204
    gone = api.delete(f"{url(customer)}/{device['id']}")
    assert gone.status_code == 404
    assert "has no device" in gone.json()["error"]["message"]
    assert not Device.objects.exists()


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"platform": "web", "token": "x"}, "subscription", "needs its PushSubscription"),
        ({"platform": "android"}, "token", "FCM registration token"),
        ({"platform": "fax", "token": "x"}, "platform", "not a valid choice"),
        (
            {"platform": "web", "subscription": {"endpoint": "https://p.example/1",
             "keys": {"p256dh": "AAAA", "auth": b64url(os.urandom(16))}}},
            "subscription.keys.p256dh",
            "uncompressed P-256 public key",
        ),
        (
            {"platform": "web", "subscription": subscription("http://p.example/1")},
            "subscription.endpoint",
            "https://",
        ),
        ({"platform": "ios", "token": "x", "colour": "red"}, "colour", "unknown field"),
    ],
)  # fmt: skip
def test_bad_input_names_the_field(
    api: APIClient, customer: Customer, body: dict[str, Any], field: str, words: str
) -> None:
    response = api.post(url(customer), body, format="json")
    assert response.status_code == 400, response.content
    details = response.json()["error"]["details"]
    assert any(d["field"] == field and words in d["message"] for d in details), details
    assert not Device.objects.exists()


def test_unknown_customer_is_404(api: APIClient) -> None:
    response = api.post("/api/v1/customers/nobody/devices", {"platform": "ios", "token": "x"})
    assert response.status_code == 404


def test_export_lists_and_erasure_removes_devices(api: APIClient, customer: Customer) -> None:
    api.post(url(customer), {"platform": "ios", "token": "x"}, format="json")
    from customers.privacy import customer_export

    (exported,) = customer_export(customer=customer)["devices"]
    assert (exported["platform"], exported["token"], exported["status"]) == ("ios", "x", "active")
    erasure = customer_erase(customer=customer, requested_by="test")
    assert erasure.cleared["devices"] == 1
    assert not Device.objects.exists()
