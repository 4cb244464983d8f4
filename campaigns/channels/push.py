"""Push notifications to every active device of the customer (customers.Device): browsers by Web
Push (RFC 8030 delivery, RFC 8291 payload encryption, RFC 8292 VAPID) through `pywebpush`, the
Android and iOS apps by Firebase Cloud Messaging HTTP v1 with an OAuth2 token from a service
account (`google-auth`).

What each provider answer does (docs/channels.md):
- 2xx: the device accepted it. The intervention is sent when at least one device accepted.
- Web Push 404/410, FCM `UNREGISTERED` (404): the subscription or token is gone; the device is
  marked unregistered with the provider's words and never tried again.
- 429 and 5xx, timeouts, refused connections: transient; when no device accepted, the relay
  retries the intervention with its backoff.
- Any other 4xx: permanent for that device, with the provider's reason; when no device accepted,
  the intervention fails with the reasons.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

import requests
import requests.adapters
from django.conf import settings
from django.utils import timezone

from campaigns.channels.base import (
    OutboundMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
    http_session,
)
from campaigns.push_text import push_payload
from customers.models import Device, DevicePlatform, DeviceStatus
from customers.services import devices_unregister

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# A signed VAPID token is reused for this long (RFC 8292 allows at most 24 h; we sign for 12 h
# and renew an hour before it ends), so the relay signs once per push service, not per message.
VAPID_TOKEN_SECONDS = 12 * 3600
VAPID_RENEW_BEFORE = 3600


def vapid_key_pair() -> tuple[str, str]:
    """A new VAPID key pair as (private, public): the private key as its raw 32 bytes and the
    public key as the uncompressed P-256 point (the browser's applicationServerKey), both
    base64url without padding — the forms WEBPUSH_VAPID_PRIVATE_KEY/PUBLIC_KEY take."""
    from cryptography.hazmat.primitives import serialization
    from py_vapid import Vapid
    from py_vapid.utils import b64urlencode

    vapid = Vapid()
    vapid.generate_keys()
    private = vapid.private_key.private_numbers().private_value.to_bytes(32, "big")
    public = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64urlencode(private), b64urlencode(public)


class DeviceGoneError(Exception):
    """The provider says this device will never receive anything again."""


def _transient_or_permanent(provider: str, status: int, text: str) -> Exception:
    if status == 429 or status >= 500:
        return TransientDeliveryError(f"{provider} HTTP {status}: {text[:200]}")
    return PermanentDeliveryError(f"{provider} HTTP {status}: {text[:200]}")


class WebPushSender:
    """Web Push with VAPID keys from settings; one HTTP session per relay chunk."""

    def __init__(self, session: requests.Session) -> None:
        from py_vapid import Vapid

        if not settings.WEBPUSH_VAPID_PRIVATE_KEY:
            raise PermanentDeliveryError(
                "WEBPUSH_VAPID_PRIVATE_KEY is not set (manage.py vapid_keys makes a key pair)"
            )
        try:
            self.vapid = Vapid.from_string(private_key=settings.WEBPUSH_VAPID_PRIVATE_KEY)
        except Exception as exc:  # py_vapid raises several types for a malformed key
            raise PermanentDeliveryError(f"WEBPUSH_VAPID_PRIVATE_KEY is not a key: {exc}") from exc
        self.session = session
        self.signed: dict[str, tuple[dict[str, str], float]] = {}
        self.lock = threading.Lock()  # sends run in several threads; one signature per service

    def _vapid_headers(self, endpoint: str) -> dict[str, str]:
        url = urlparse(endpoint)
        audience = f"{url.scheme}://{url.netloc}"
        with self.lock:
            cached = self.signed.get(audience)
            if cached is None or cached[1] - time.time() < VAPID_RENEW_BEFORE:
                expires = int(time.time()) + VAPID_TOKEN_SECONDS
                claims = {"aud": audience, "exp": expires, "sub": settings.WEBPUSH_VAPID_SUBJECT}
                cached = (dict(self.vapid.sign(claims)), expires)
                self.signed[audience] = cached
        return cached[0]

    def send(self, *, endpoint: str, p256dh: str, auth: str, data: bytes, topic: str) -> str:
        from pywebpush import WebPusher

        subscription = {"endpoint": endpoint, "keys": {"p256dh": p256dh, "auth": auth}}
        try:
            pusher = WebPusher(subscription, requests_session=self.session)
        except Exception as exc:  # pywebpush checks the keys here
            raise DeviceGoneError(f"the subscription's keys are unusable: {exc}") from exc
        # Topic: a newer message of the same intervention replaces an undelivered one.
        headers = {**self._vapid_headers(endpoint), "Urgency": "normal", "Topic": topic}
        try:
            response = pusher.send(
                data, headers, ttl=settings.WEBPUSH_TTL, timeout=settings.PUSH_TIMEOUT
            )
        except requests.RequestException as exc:
            raise TransientDeliveryError(f"Web Push unreachable: {exc}") from exc
        status = int(response.status_code)
        if status in (200, 201, 202):
            return str(response.headers.get("Location", ""))
        if status in (404, 410):
            raise DeviceGoneError(f"Web Push {status}: the subscription has expired or was removed")
        raise _transient_or_permanent("Web Push", status, response.text)


# Service-account credentials per (file, token URL), kept for the life of the process so the
# access token (valid an hour) is fetched once an hour, not once per relay chunk.
_CREDENTIALS: dict[tuple[str, str, str], tuple[Any, str]] = {}


class FcmSender:
    """FCM HTTP v1: POST {"message": ...} with a bearer token from the service account."""

    def __init__(self, connections: int) -> None:
        from google.auth.transport.requests import AuthorizedSession

        path = settings.FCM_SERVICE_ACCOUNT_FILE
        credentials, project = self._credentials(path)
        self.url = settings.FCM_SEND_URL.format(project_id=project)
        # Its own pool (AuthorizedSession is a requests.Session): one connection per send in
        # flight, kept alive across the chunk.
        self.session = AuthorizedSession(credentials)
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=connections)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    @staticmethod
    def _credentials(path: str) -> tuple[Any, str]:
        from google.oauth2 import service_account

        key = (path, settings.FCM_TOKEN_URL, settings.FCM_PROJECT_ID)
        if key in _CREDENTIALS:
            return _CREDENTIALS[key]
        if not path:
            raise PermanentDeliveryError("FCM_SERVICE_ACCOUNT_FILE is not set")
        try:
            with open(path, encoding="utf-8") as handle:
                info = json.load(handle)
        except (OSError, ValueError) as exc:
            raise PermanentDeliveryError(f"cannot read FCM_SERVICE_ACCOUNT_FILE: {exc}") from exc
        if settings.FCM_TOKEN_URL:
            info["token_uri"] = settings.FCM_TOKEN_URL
        try:
            credentials = service_account.Credentials.from_service_account_info(
                info, scopes=[FCM_SCOPE]
            )
        except (ValueError, KeyError) as exc:
            raise PermanentDeliveryError(f"FCM_SERVICE_ACCOUNT_FILE: {exc}") from exc
        project = settings.FCM_PROJECT_ID or info.get("project_id", "")
        if not project:
            raise PermanentDeliveryError("no FCM project: set FCM_PROJECT_ID")
        _CREDENTIALS[key] = (credentials, str(project))
        return credentials, str(project)

    def send(self, *, token: str, payload: dict[str, Any], platform: str) -> str:
        from google.auth.exceptions import GoogleAuthError, TransportError

        notification = {"title": payload["title"], "body": payload["body"]}
        if payload.get("image"):
            notification["image"] = str(payload["image"])
        # FCM's data values are strings; the app opens `url` on a tap.
        data = {k: str(v) for k, v in payload.items() if k in ("url", "intervention")}
        message: dict[str, Any] = {"token": token, "notification": notification, "data": data}
        if platform == DevicePlatform.ANDROID:
            message["android"] = {"ttl": f"{settings.WEBPUSH_TTL}s"}
        body = {"message": message}
        try:
            response = self.session.post(self.url, json=body, timeout=settings.PUSH_TIMEOUT)
        except TransportError as exc:
            raise TransientDeliveryError(f"FCM token endpoint unreachable: {exc}") from exc
        except GoogleAuthError as exc:  # the token endpoint refused the service account
            raise PermanentDeliveryError(f"FCM credentials refused: {exc}") from exc
        except requests.RequestException as exc:
            raise TransientDeliveryError(f"FCM unreachable: {exc}") from exc
        status = int(response.status_code)
        if status == 200:
            try:
                return str(response.json().get("name", ""))
            except ValueError:
                return ""
        code, text = _fcm_error(response)
        if code == "UNREGISTERED":
            raise DeviceGoneError(f"FCM UNREGISTERED: {text}")
        raise _transient_or_permanent("FCM", status, f"{code}: {text}" if code else text)


def _fcm_error(response: requests.Response) -> tuple[str, str]:
    """(the FCM error code, its message) of an error answer."""
    try:
        error = response.json().get("error", {})
    except ValueError:
        return "", response.text[:200]
    code = ""
    for detail in error.get("details", []) or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            code = str(detail["errorCode"])
    return code, str(error.get("message", ""))[:200]


class PushChannel:
    """Up to CAMPAIGN_RELAY_HTTP_THREADS sends in flight over one pooled keep-alive session. The
    chunk's devices are read once (`prepare`), and the devices a provider called gone are
    written once per round (`settle`), both in the relay's thread: `send` touches no database."""

    name = "push"

    def __init__(self) -> None:
        self.concurrency = max(1, settings.CAMPAIGN_RELAY_HTTP_THREADS)
        self.session: requests.Session | None = None
        self.webpush: WebPushSender | None = None
        self.fcm: FcmSender | None = None
        self.devices: dict[int, list[dict[str, Any]]] | None = None
        self.gone: dict[str, list[int]] = defaultdict(list)
        self.lock = threading.Lock()

    def open(self) -> None:
        self.session = http_session(self.concurrency)

    def prepare(self, messages: Sequence[OutboundMessage]) -> None:
        self.devices = defaultdict(list)
        rows = (
            Device.objects.filter(
                customer_id__in={m.customer_id for m in messages}, status=DeviceStatus.ACTIVE
            )
            .order_by("pk")
            .values("pk", "customer_id", "platform", "token", "p256dh", "auth")
        )
        for row in rows:
            self.devices[row["customer_id"]].append(dict(row))

    def _web(self) -> WebPushSender:
        with self.lock:
            if self.webpush is None:
                assert self.session is not None, "open() first"
                self.webpush = WebPushSender(self.session)
            return self.webpush

    def _fcm(self) -> FcmSender:
        with self.lock:
            if self.fcm is None:
                self.fcm = FcmSender(self.concurrency)
            return self.fcm

    def _send_one(self, device: Mapping[str, Any], payload: dict[str, Any], topic: str) -> str:
        if device["platform"] == DevicePlatform.WEB:
            data = json.dumps(payload, ensure_ascii=False).encode()
            return self._web().send(
                endpoint=device["token"],
                p256dh=device["p256dh"],
                auth=device["auth"],
                data=data,
                topic=topic,
            )
        return self._fcm().send(token=device["token"], payload=payload, platform=device["platform"])

    def _devices_of(self, customer_id: int) -> list[dict[str, Any]]:
        if self.devices is None:  # not prepared: a single send from the caller's thread
            self.prepare(
                [OutboundMessage(intervention_id=0, idempotency_key="", customer_id=customer_id)]
            )
            assert self.devices is not None
        with self.lock:
            gone = {pk for ids in self.gone.values() for pk in ids}
        return [d for d in self.devices.get(customer_id, []) if d["pk"] not in gone]

    def send(self, message: OutboundMessage) -> str:
        devices = self._devices_of(message.customer_id)
        if not devices:
            raise PermanentDeliveryError("the customer has no active push device")
        payload = push_payload(
            title=message.subject,
            body=message.text,
            deep_link=message.deep_link,
            image_url=message.image_url,
            intervention_id=message.intervention_id,
        )
        # A Topic header is at most 32 URL-safe characters.
        topic = message.idempotency_key.replace("intervention-", "i")[:32]
        accepted: list[str] = []
        gone: dict[str, list[int]] = defaultdict(list)
        transient: list[str] = []
        permanent: list[str] = []
        for device in devices:
            try:
                accepted.append(self._send_one(device, payload, topic) or f"device-{device['pk']}")
            except DeviceGoneError as exc:
                gone[str(exc)].append(device["pk"])
            except TransientDeliveryError as exc:
                transient.append(f"device {device['pk']}: {exc}")
            except PermanentDeliveryError as exc:
                permanent.append(f"device {device['pk']}: {exc}")
        with self.lock:
            for reason, ids in gone.items():
                self.gone[reason].extend(ids)
        if accepted:
            return " ".join(accepted)[:200]
        if transient:
            raise TransientDeliveryError("; ".join(transient + permanent))
        if permanent:
            raise PermanentDeliveryError("; ".join(permanent))
        reasons = "; ".join(gone)
        raise PermanentDeliveryError(f"every device is unregistered now: {reasons}")

    def settle(self) -> None:
        """Mark the devices the provider called gone (the relay calls this after each round)."""
        with self.lock:
            gone, self.gone = self.gone, defaultdict(list)
        now = timezone.now()
        for reason, ids in gone.items():
            devices_unregister(device_ids=ids, reason=reason, now=now)
        if self.devices is not None and gone:
            dropped = {pk for ids in gone.values() for pk in ids}
            for customer_id, rows in self.devices.items():
                self.devices[customer_id] = [d for d in rows if d["pk"] not in dropped]

    def close(self) -> None:
        self.settle()
        if self.fcm is not None:
            self.fcm.session.close()
            self.fcm = None
        if self.session is not None:
            self.session.close()
            self.session = None
        self.webpush = None
        self.devices = None
