"""The channel interface: one message in, a provider message id out, or a classified error."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class DeliveryError(Exception):
    """Delivery failed; subclasses say whether trying again can help."""


class TransientDeliveryError(DeliveryError):
    """Network trouble, throttling, a 4xx SMTP reply or a 5xx HTTP one: retry with backoff."""


class PermanentDeliveryError(DeliveryError):
    """The provider refused this message for good (bad address, rejected content)."""


@dataclass(frozen=True)
class OutboundMessage:
    intervention_id: int
    # Passed to providers that deduplicate (webhook Idempotency-Key, email Message-ID).
    idempotency_key: str
    customer_id: int
    to_email: str = ""
    to_phone: str = ""
    subject: str = ""
    text: str = ""
    html: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    due_at: datetime | None = None
    coupon_code: str = ""
    # Push and in-app: where a tap leads, an optional image, and (in-app) when it leaves the inbox.
    deep_link: str = ""
    image_url: str = ""
    expires_at: datetime | None = None


class ChannelBackend(Protocol):
    name: str

    def open(self) -> None:
        """Prepare for a chunk of messages (e.g. one SMTP connection); may raise Transient."""

    def send(self, message: OutboundMessage) -> str:
        """Deliver one message; return the provider's id for it (may be empty)."""

    def close(self) -> None: ...
