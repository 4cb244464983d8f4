"""The channel interface: one message in, a provider message id out, or a classified error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import requests
import requests.adapters


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
    # How many sends the relay may have in flight at once (threads). 1: one after another on
    # one connection, in the relay's thread (so `send` may use the database). Above 1, `send`
    # must be thread-safe and touch no database (Django connections are per thread): it reads
    # what `prepare` loaded and leaves its writes to `settle`.
    concurrency: int

    def open(self) -> None:
        """Prepare for a chunk of messages (e.g. one SMTP connection); may raise Transient."""

    def prepare(self, messages: Sequence[OutboundMessage]) -> None:
        """Read what the sends of these messages need, in one query (e.g. push devices)."""

    def send(self, message: OutboundMessage) -> str:
        """Deliver one message; return the provider's id for it (may be empty)."""

    def settle(self) -> None:
        """Write what the last sends learned (e.g. devices gone), in the relay's thread."""

    def close(self) -> None: ...


class SerialChannel:
    """The defaults of a backend that sends one message at a time and reads nothing ahead."""

    concurrency = 1

    def prepare(self, messages: Sequence[OutboundMessage]) -> None:
        pass

    def settle(self) -> None:
        pass


def http_session(connections: int) -> requests.Session:
    """A keep-alive HTTP session whose pool holds `connections` connections per host, so that
    many sends in flight reuse their connections instead of opening one per request."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=max(1, connections))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
