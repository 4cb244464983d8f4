"""SMS backends, chosen by settings.SMS_BACKEND: `twilio` (official SDK), `webhook` (generic
HTTPS POST signed with HMAC-SHA256), `console` and `file` (development)."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests
from django.conf import settings

from campaigns.channels.base import (
    ChannelBackend,
    OutboundMessage,
    PermanentDeliveryError,
    SerialChannel,
    TransientDeliveryError,
    http_session,
)


def sms_backend() -> ChannelBackend:
    name = settings.SMS_BACKEND
    backends: dict[str, type[Any]] = {
        "console": ConsoleSms,
        "file": FileSms,
        "webhook": WebhookSms,
        "twilio": TwilioSms,
    }
    if name not in backends:
        raise ValueError(f"SMS_BACKEND must be one of {', '.join(backends)}; got {name!r}")
    backend: ChannelBackend = backends[name]()
    return backend


def _require_phone(message: OutboundMessage) -> None:
    if not message.to_phone:
        raise PermanentDeliveryError("customer has no phone number")


class ConsoleSms(SerialChannel):
    """Prints each SMS to standard output (development)."""

    name = "sms"

    def open(self) -> None:
        pass

    def send(self, message: OutboundMessage) -> str:
        _require_phone(message)
        sys.stdout.write(f"[sms to {message.to_phone}] {message.text}\n")
        return message.idempotency_key

    def close(self) -> None:
        pass


class FileSms(SerialChannel):
    """Appends one JSON line per SMS to settings.SMS_FILE_PATH (development outbox)."""

    name = "sms"

    def open(self) -> None:
        Path(settings.SMS_FILE_PATH).parent.mkdir(parents=True, exist_ok=True)

    def send(self, message: OutboundMessage) -> str:
        _require_phone(message)
        line = json.dumps(
            {"id": message.idempotency_key, "to": message.to_phone, "body": message.text}
        )
        with open(settings.SMS_FILE_PATH, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        return message.idempotency_key

    def close(self) -> None:
        pass


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, "<timestamp>.<body>"), as the receiver recomputes."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class WebhookSms:
    """POSTs JSON to settings.SMS_WEBHOOK_URL with `X-Retention-Signature` (HMAC-SHA256 over
    timestamp and body), `X-Retention-Timestamp` and `Idempotency-Key` (the intervention).
    One keep-alive HTTP session per relay chunk, up to CAMPAIGN_RELAY_HTTP_THREADS requests in
    flight (each send reads only its message, so it is thread-safe)."""

    name = "sms"

    def __init__(self) -> None:
        self.concurrency = max(1, settings.CAMPAIGN_RELAY_HTTP_THREADS)
        self.session: requests.Session | None = None

    def open(self) -> None:
        if not settings.SMS_WEBHOOK_URL or not settings.SMS_WEBHOOK_SECRET:
            raise PermanentDeliveryError("SMS_WEBHOOK_URL and SMS_WEBHOOK_SECRET must be set")
        self.session = http_session(self.concurrency)

    def prepare(self, messages: Sequence[OutboundMessage]) -> None:
        pass

    def send(self, message: OutboundMessage) -> str:
        _require_phone(message)
        assert self.session is not None, "open() first"
        body = json.dumps(
            {
                "to": message.to_phone,
                "from": settings.SMS_FROM,
                "body": message.text,
                "idempotency_key": message.idempotency_key,
            }
        ).encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": message.idempotency_key,
            "X-Retention-Timestamp": timestamp,
            "X-Retention-Signature": webhook_signature(
                secret=settings.SMS_WEBHOOK_SECRET, timestamp=timestamp, body=body
            ),
        }
        try:
            response = self.session.post(
                settings.SMS_WEBHOOK_URL, data=body, headers=headers, timeout=settings.SMS_TIMEOUT
            )
        except requests.RequestException as exc:
            raise TransientDeliveryError(f"webhook unreachable: {exc}") from exc
        status = response.status_code
        if status == 429 or status >= 500:
            raise TransientDeliveryError(f"webhook HTTP {status}")
        if status >= 300:
            raise PermanentDeliveryError(f"webhook HTTP {status}: {response.content[:200]!r}")
        try:
            return str(json.loads(response.content or b"{}").get("id", message.idempotency_key))
        except (ValueError, AttributeError):
            return message.idempotency_key

    def settle(self) -> None:
        pass

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None


class TwilioSms(SerialChannel):
    """Twilio Programmable Messaging through the official SDK. Twilio's Messages API has no
    idempotency key, so at-most-once rests on the relay's check-and-set before sending."""

    name = "sms"

    def __init__(self) -> None:
        self.client: Any = None

    def open(self) -> None:
        from twilio.rest import Client

        if not settings.TWILIO_ACCOUNT_SID or not settings.TWILIO_AUTH_TOKEN:
            raise PermanentDeliveryError("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN must be set")
        self.client = Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN)

    def send(self, message: OutboundMessage) -> str:
        from twilio.base.exceptions import TwilioException, TwilioRestException

        _require_phone(message)
        try:
            sent = self.client.messages.create(
                to=message.to_phone, from_=settings.SMS_FROM, body=message.text
            )
        except TwilioRestException as exc:
            if exc.status == 429 or exc.status >= 500:
                raise TransientDeliveryError(f"Twilio {exc.status}: {exc.msg}") from exc
            raise PermanentDeliveryError(f"Twilio {exc.status} ({exc.code}): {exc.msg}") from exc
        except (TwilioException, OSError) as exc:
            raise TransientDeliveryError(f"Twilio: {exc}") from exc
        return str(sent.sid)

    def close(self) -> None:
        self.client = None
