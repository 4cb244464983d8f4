"""The push channel end to end: devices registered through the API, a dispatch, the relay
sending through pywebpush and FCM HTTP v1 to a real local push service, and what each provider
answer does (docs/channels.md)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from rest_framework.test import APIClient

from campaigns.channels.push import vapid_key_pair
from campaigns.models import Intervention, InterventionStatus
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from customers.models import Consent, Customer, Device, DeviceStatus
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer, make_template
from tests.campaigns.push_servers import PushService, Subscription, b64url_decode, push_service

pytestmark = pytest.mark.django_db


@pytest.fixture
def service(settings: Any, tmp_path: Path) -> Iterator[PushService]:
    """The local push service, VAPID keys, FCM pointed at it, no quiet hours."""
    with push_service() as running:
        private, public = vapid_key_pair()
        settings.WEBPUSH_VAPID_PRIVATE_KEY = private
        settings.WEBPUSH_VAPID_PUBLIC_KEY = public
        settings.WEBPUSH_VAPID_SUBJECT = "mailto:push@shop.example"
        settings.PUSH_ALLOW_HTTP = True
        settings.FCM_SERVICE_ACCOUNT_FILE = str(running.service_account_file(tmp_path))
        settings.FCM_SEND_URL = f"{running.base_url}/v1/projects/{{project_id}}/messages:send"
        settings.FCM_TOKEN_URL = ""  # the file's token_uri already names the local server
        settings.CAMPAIGN_QUIET_HOURS = (0, 0)
        yield running


def push_campaign(**fields: Any) -> Any:
    template = make_template(
        "push",
        subject="{{ first_name }}, a gift for you",
        body="Use {{ coupon_code }} for {{ offer.description }}.",
        deep_link="https://shop.example/offer?code={{ coupon_code }}",
        image_url="https://shop.example/gift.png",
    )
    rule = {"name": "critical by push", "tiers": ["critical"], "channel": "push"}
    rule |= {"offer": make_offer(), "template": template}
    return make_campaign(rules=[rule], control_percentage=Decimal("0"), **fields)


def register(api: APIClient, customer: Customer, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post(f"/api/v1/customers/{customer.external_id}/devices", body, format="json")
    assert response.status_code in (200, 201), response.content
    return dict(response.json())


def test_web_push_round_trip_decrypts_and_vapid_verifies(
    service: PushService, api: APIClient, settings: Any
) -> None:
    (customer,) = make_customers(1, name="Ada Lovelace")
    subscription = Subscription.new(f"{service.base_url}/wp/sub-1")
    register(api, customer, {"platform": "web", "subscription": subscription.as_json()})
    campaign = push_campaign()
    campaign_dispatch(campaign=campaign, now=NOON)

    summary = interventions_relay(now=NOON, channels=["push"])

    assert summary.sent == {"push": 1}
    (request,) = service.of_kind("webpush")
    assert request["path"] == "/wp/sub-1"
    assert request["headers"]["content-encoding"] == "aes128gcm"
    assert int(request["headers"]["ttl"]) == settings.WEBPUSH_TTL
    payload = subscription.decrypt(request["body"])
    intervention = Intervention.objects.get(campaign=campaign)
    code = intervention.coupon.code
    assert payload["title"] == "Ada, a gift for you"
    assert payload["body"] == f"Use {code} for 15% off."
    assert payload["url"] == f"https://shop.example/offer?code={code}"
    assert payload["image"] == "https://shop.example/gift.png"
    assert payload["intervention"] == intervention.pk
    # RFC 8292: "vapid t=<JWT signed ES256>, k=<public key>"; verified with the key alone.
    scheme, _, params = request["headers"]["authorization"].partition(" ")
    parts = dict(p.split("=", 1) for p in params.split(","))
    assert scheme == "vapid"
    assert parts["k"] == settings.WEBPUSH_VAPID_PUBLIC_KEY
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(parts["k"]))
    claims = jwt.decode(parts["t"], public, algorithms=["ES256"], audience=service.base_url)
    assert claims["sub"] == "mailto:push@shop.example"
    with pytest.raises(jwt.InvalidSignatureError):  # and not with another key
        other = ec.generate_private_key(ec.SECP256R1()).public_key()
        jwt.decode(parts["t"], other, algorithms=["ES256"], audience=service.base_url)
    intervention.refresh_from_db()
    assert intervention.status == InterventionStatus.SENT
    assert intervention.provider_message_id.startswith(f"{service.base_url}/m/")


def test_web_push_gone_unregisters_the_device_and_one_acceptance_is_enough(
    service: PushService, api: APIClient
) -> None:
    both, only_gone = make_customers(2)
    gone_1 = Subscription.new(f"{service.base_url}/wp/gone-1")
    kept = Subscription.new(f"{service.base_url}/wp/kept")
    gone_2 = Subscription.new(f"{service.base_url}/wp/gone-2")
    register(api, both, {"platform": "web", "subscription": gone_1.as_json()})
    register(api, both, {"platform": "web", "subscription": kept.as_json()})
    register(api, only_gone, {"platform": "web", "subscription": gone_2.as_json()})
    service.web_answers = {"/wp/gone-1": [410], "/wp/gone-2": [404]}
    campaign = push_campaign()
    campaign_dispatch(campaign=campaign, now=NOON)

    interventions_relay(now=NOON, channels=["push"])

    sent = Intervention.objects.get(campaign=campaign, customer=both)
    failed = Intervention.objects.get(campaign=campaign, customer=only_gone)
    assert sent.status == InterventionStatus.SENT
    assert failed.status == InterventionStatus.FAILED
    assert failed.reason == "provider_rejected"
    assert "unregistered" in failed.detail
    devices = {d.token.rsplit("/", 1)[1]: d for d in Device.objects.all()}
    assert devices["kept"].status == DeviceStatus.ACTIVE
    for name in ("gone-1", "gone-2"):
        assert devices[name].status == DeviceStatus.UNREGISTERED
        assert "subscription has expired" in devices[name].unregistered_reason
        assert devices[name].unregistered_at is not None


def test_fcm_v1_success_unregistered_retry_and_permanent(
    service: PushService, api: APIClient
) -> None:
    ok, gone, busy, bad = make_customers(4)
    for customer, token in (
        (ok, "tok-ok"),
        (gone, "tok-gone"),
        (busy, "tok-busy"),
        (bad, "tok-bad"),
    ):
        register(api, customer, {"platform": "android", "token": token})
    service.fcm_answers = {
        "tok-gone": [(404, "UNREGISTERED")],
        "tok-busy": [(429, "QUOTA_EXCEEDED")],
        "tok-bad": [(400, "INVALID_ARGUMENT")],
    }
    campaign = push_campaign()
    campaign_dispatch(campaign=campaign, now=NOON)

    first = interventions_relay(now=NOON, channels=["push"])

    def status_of(customer: Customer) -> Intervention:
        return Intervention.objects.get(campaign=campaign, customer=customer)

    assert first.sent == {"push": 1} and first.retried == 1
    assert status_of(ok).status == InterventionStatus.SENT
    assert status_of(ok).provider_message_id.startswith("projects/shop-app/messages/")
    assert status_of(gone).status == InterventionStatus.FAILED
    assert Device.objects.get(token="tok-gone").status == DeviceStatus.UNREGISTERED
    assert "UNREGISTERED" in Device.objects.get(token="tok-gone").unregistered_reason
    assert status_of(bad).status == InterventionStatus.FAILED
    assert status_of(bad).reason == "provider_rejected"
    assert "INVALID_ARGUMENT" in status_of(bad).detail
    assert Device.objects.get(token="tok-bad").status == DeviceStatus.ACTIVE  # not gone
    waiting = status_of(busy)
    assert waiting.status == InterventionStatus.PENDING
    assert waiting.send_after is not None and waiting.send_after > NOON
    assert "429" in waiting.detail

    second = interventions_relay(now=NOON + timedelta(hours=1), channels=["push"])

    assert second.sent == {"push": 1}
    assert status_of(busy).status == InterventionStatus.SENT
    sends = [r for r in service.of_kind("fcm") if r["message"]["token"] == "tok-busy"]
    assert [r["status"] for r in sends] == [429, 200]  # retried once, delivered once
    # Every send carried a bearer token the token endpoint issued for a signed JWT grant.
    tokens = service.of_kind("token")
    assert tokens and tokens[0]["form"]["grant_type"] == [
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    ]
    issued = {f"Bearer access-{n}" for n in range(1, service.tokens_issued + 1)}
    assert {r["headers"]["authorization"] for r in service.of_kind("fcm")} <= issued
    message = sends[-1]["message"]
    code = status_of(busy).coupon.code
    assert message["notification"]["title"] == f"{busy.name.split()[0]}, a gift for you"
    assert message["data"]["url"] == f"https://shop.example/offer?code={code}"
    assert second.failed == {} and Intervention.objects.filter(campaign=campaign).count() == 4


def test_push_consent_device_and_fallback_to_email(service: PushService, api: APIClient) -> None:
    with_device, revoked, without_device, neither = make_customers(4)
    for customer in (with_device, revoked):
        register(api, customer, {"platform": "ios", "token": f"ios-{customer.pk}"})
    Consent.objects.create(
        customer=revoked, channel="push", status="revoked", recorded_at=NOON, source="test"
    )
    Consent.objects.create(
        customer=neither, channel="email", status="revoked", recorded_at=NOON, source="test"
    )
    only_push = push_campaign(name="Push only")
    summary = campaign_dispatch(campaign=only_push, now=NOON)
    reasons = dict(
        Intervention.objects.filter(campaign=only_push).values_list("customer_id", "reason")
    )
    assert reasons[revoked.pk] == "no_consent"
    assert reasons[without_device.pk] == "no_address"
    assert reasons[with_device.pk] == ""
    assert summary.per_channel == {"push": 1}

    email = make_template("email", name="fallback email")
    rule = only_push.rules.get()
    fallback = make_campaign(
        name="Push, else email",
        control_percentage=Decimal("0"),
        cooldown_days=0,
        rules=[
            {
                "name": "push else email",
                "tiers": ["critical"],
                "channel": "push",
                "template": rule.template,
                "offer": rule.offer,
                "fallback_channel": "email",
                "fallback_template": email,
            }
        ],
        priority=only_push.priority - 1,
    )
    later = NOON + timedelta(days=30)
    summary = campaign_dispatch(campaign=fallback, now=later)
    rows = {
        i.customer_id: i
        for i in Intervention.objects.filter(campaign=fallback).select_related("template")
    }
    assert (rows[with_device.pk].channel, rows[with_device.pk].fell_back) == ("push", False)
    # Push consent revoked, or no device: the first channel they can receive is email.
    for customer in (revoked, without_device):
        assert (rows[customer.pk].channel, rows[customer.pk].fell_back) == ("email", True)
        assert rows[customer.pk].template == email
        assert rows[customer.pk].status == InterventionStatus.PENDING
    # Neither channel reachable: the first channel's own reason is recorded.
    assert (rows[neither.pk].channel, rows[neither.pk].reason) == ("push", "no_address")
    assert summary.per_channel == {"push": 1, "email": 2}


def test_quiet_hours_hold_push_but_not_in_app(
    service: PushService, api: APIClient, settings: Any
) -> None:
    # 21:00 in Tokyo at NOON UTC: inside the default quiet hours 21-8.
    settings.CAMPAIGN_QUIET_HOURS = (21, 8)
    (tokyo,) = make_customers(1, time_zone="Asia/Tokyo")
    register(api, tokyo, {"platform": "android", "token": "tok-tokyo"})
    push = push_campaign(name="Push")
    campaign_dispatch(campaign=push, now=NOON)
    in_app = make_campaign(
        name="In-app",
        control_percentage=Decimal("0"),
        priority=push.priority - 1,
        rules=[
            {
                "name": "inbox",
                "tiers": ["critical"],
                "channel": "in_app",
                "template": make_template("in_app", name="inbox"),
            }
        ],
    )
    campaign_dispatch(campaign=in_app, now=NOON)
    assert Intervention.objects.get(campaign=push).status == InterventionStatus.SCHEDULED
    assert Intervention.objects.get(campaign=in_app).status == InterventionStatus.PENDING
