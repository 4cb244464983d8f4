"""SMS backends, chosen by settings.SMS_BACKEND: `twilio` (official SDK), `webhook` (generic
HTTPS POST signed with HMAC-SHA256), `console` and `file` (development)."""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from django.conf import settings

from campaigns.channels.base import (
    ChannelBackend,
    OutboundMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
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


class ConsoleSms:
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


class FileSms:
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
    timestamp and body), `X-Retention-Timestamp` and `Idempotency-Key` (the intervention)."""

    name = "sms"

    def open(self) -> None:
        if not settings.SMS_WEBHOOK_URL or not settings.SMS_WEBHOOK_SECRET:
            raise PermanentDeliveryError("SMS_WEBHOOK_URL and SMS_WEBHOOK_SECRET must be set")

    def send(self, message: OutboundMessage) -> str:
        _require_phone(message)
        body = json.dumps(
            {
                "to": message.to_phone,
                "from": settings.SMS_FROM,
                "body": message.text,
                "idempotency_key": message.idempotency_key,
            }
        ).encode()
        timestamp = str(int(time.time()))
        request = urllib.request.Request(
            settings.SMS_WEBHOOK_URL,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Idempotency-Key": message.idempotency_key,
                "X-Retention-Timestamp": timestamp,
                "X-Retention-Signature": webhook_signature(
                    secret=settings.SMS_WEBHOOK_SECRET, timestamp=timestamp, body=body
                ),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=settings.SMS_TIMEOUT) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 429 or exc.code >= 500:
                raise TransientDeliveryError(f"webhook HTTP {exc.code}") from exc
            raise PermanentDeliveryError(f"webhook HTTP {exc.code}: {exc.read()[:200]!r}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise TransientDeliveryError(f"webhook unreachable: {exc}") from exc
        try:
            return str(json.loads(payload or b"{}").get("id", message.idempotency_key))
        except (ValueError, AttributeError):
            return message.idempotency_key

    def close(self) -> None:
        pass


class TwilioSms:
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
