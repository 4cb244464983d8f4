"""Email through Django's email framework (SMTP in production, a file outbox in development):
text and HTML parts, List-Unsubscribe + List-Unsubscribe-Post (RFC 8058) one-click headers."""

from __future__ import annotations

import contextlib
import queue
import smtplib
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from campaigns.channels.base import (
    OutboundMessage,
    PermanentDeliveryError,
    SerialChannel,
    TransientDeliveryError,
)


class EmailChannel(SerialChannel):
    """CAMPAIGN_RELAY_SMTP_CONNECTIONS connections per relay chunk (default one: messages go out
    one after another on it). With more, the relay sends that many at once, one per connection:
    a remote provider's round trips (four per message) then overlap, at the price of that many
    rows left "delivery unknown" when a worker dies mid-send (docs/channels.md)."""

    name = "email"

    def __init__(self) -> None:
        self.concurrency = max(1, settings.CAMPAIGN_RELAY_SMTP_CONNECTIONS)
        self.connections: list[Any] = []
        self.idle: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def open(self) -> None:
        # The backend is read from settings at each open.
        for _ in range(self.concurrency):
            connection = get_connection(fail_silently=False)
            try:
                connection.open()
            except (OSError, smtplib.SMTPException) as exc:
                self.close()
                raise TransientDeliveryError(f"cannot connect to the mail server: {exc}") from exc
            self.connections.append(connection)
            self.idle.put(connection)

    def send(self, message: OutboundMessage) -> str:
        if not message.to_email:
            raise PermanentDeliveryError("customer has no email address")
        connection = self.idle.get()  # one message per connection at a time
        try:
            return self._send(message, connection)
        finally:
            self.idle.put(connection)

    def _send(self, message: OutboundMessage, connection: Any) -> str:
        domain = settings.EMAIL_MESSAGE_ID_DOMAIN
        message_id = f"<{message.idempotency_key}@{domain}>"
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[message.to_email],
            headers={**message.headers, "Message-ID": message_id},
            connection=connection,
        )
        email.attach_alternative(message.html, "text/html")
        try:
            email.send(fail_silently=False)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            if any(400 <= code < 500 for code in codes):
                raise TransientDeliveryError(f"recipient deferred: {exc.recipients}") from exc
            raise PermanentDeliveryError(f"recipient refused: {exc.recipients}") from exc
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise TransientDeliveryError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
            raise PermanentDeliveryError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}") from exc
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            raise TransientDeliveryError(f"SMTP: {exc}") from exc
        return message_id

    def close(self) -> None:
        for connection in self.connections:
            # The messages are already accepted; a failed QUIT changes nothing.
            with contextlib.suppress(OSError, smtplib.SMTPException):
                connection.close()
        self.connections = []
        self.idle = queue.SimpleQueue()
