"""Email through Django's email framework (SMTP in production, a file outbox in development):
text and HTML parts, List-Unsubscribe + List-Unsubscribe-Post (RFC 8058) one-click headers."""

from __future__ import annotations

import contextlib
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
    name = "email"

    def __init__(self) -> None:
        self.connection: Any = None

    def open(self) -> None:
        # One connection per relay chunk; the backend is read from settings at each open.
        self.connection = get_connection(fail_silently=False)
        try:
            self.connection.open()
        except (OSError, smtplib.SMTPException) as exc:
            raise TransientDeliveryError(f"cannot connect to the mail server: {exc}") from exc

    def send(self, message: OutboundMessage) -> str:
        if not message.to_email:
            raise PermanentDeliveryError("customer has no email address")
        domain = settings.EMAIL_MESSAGE_ID_DOMAIN
        message_id = f"<{message.idempotency_key}@{domain}>"
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[message.to_email],
            headers={**message.headers, "Message-ID": message_id},
            connection=self.connection,
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
        if self.connection is not None:
            # The messages are already accepted; a failed QUIT changes nothing.
            with contextlib.suppress(OSError, smtplib.SMTPException):
                self.connection.close()
            self.connection = None
