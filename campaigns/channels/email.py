"""Email through Django's email framework (SMTP in production, a file outbox in development):
text and HTML parts, List-Unsubscribe + List-Unsubscribe-Post (RFC 8058) one-click headers.

Over Django's SMTP backend the message's bytes are composed here (`compose_email`) exactly as
Django's `EmailMultiAlternatives` writes them, apart from the random MIME boundary and the Date
(tests/campaigns/test_email_bytes.py compares the two byte for byte on awkward and random
messages), and handed to the backend's open smtplib session. Header checks, encoded words,
folding and address parsing stay Django's and the standard library's functions; only the
assembly of a multipart/alternative message is done here. Django's message objects and the
standard library's generator cost ~0.9 ms of interpreter time a message (~0.15 ms composed
here): at 1,000+ emails a second, most of a relay process's time. A message without a text part
and every other backend (file, console, locmem) take Django's objects."""

from __future__ import annotations

import contextlib
import queue
import random
import re
import smtplib
import sys
from email.policy import compat32
from email.utils import formatdate
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend as SmtpEmailBackend
from django.core.mail.message import (
    RFC5322_EMAIL_LINE_LENGTH_LIMIT,
    forbid_multi_line_headers,
    sanitize_address,
    utf8_charset_qp,
)

from campaigns.channels.base import (
    OutboundMessage,
    PermanentDeliveryError,
    SerialChannel,
    TransientDeliveryError,
)

# The standard library's generator, as Django's messages use it: compat32, CRLF line ends.
_POLICY = compat32.clone(linesep="\r\n")
# A header line compat32 writes unchanged: printable ASCII within its 78-character fold width.
_FOLD_WIDTH = 78
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")  # what the generator turns into CRLF
# An address sanitize_address returns unchanged (dot-atom local part, ASCII host name).
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+\Z"
)
# The standard library's boundary form (email.generator): 15 '=', 19 digits, '=='.
_BOUNDARY_DIGITS = len(repr(sys.maxsize - 1))
_random = random.SystemRandom()


def _header_line(name: str, value: str) -> bytes:
    """`name: value` as Django's message writes it: newlines refused (BadHeaderError), a
    non-ASCII value as encoded words, a long one folded (both by Django and the standard
    library, on the rare path)."""
    if value.isascii() and value.isprintable() and len(name) + 2 + len(value) <= _FOLD_WIDTH:
        return f"{name}: {value}\r\n".encode("ascii")
    name, encoded = forbid_multi_line_headers(name, value, "utf-8")
    return _POLICY.fold_binary(name, encoded)


def _envelope_address(address: str) -> str:
    return address if _PLAIN_ADDRESS.match(address) else sanitize_address(address, "utf-8")


def _text_part(text: str, subtype: str) -> bytes:
    """A text part as Django writes it: utf-8, 7bit or 8bit, or quoted-printable (by Django's
    charset) when a line is over 998 bytes."""
    body = text.encode("utf-8")
    if len(body) > RFC5322_EMAIL_LINE_LENGTH_LIMIT and any(
        len(line.encode("utf-8")) > RFC5322_EMAIL_LINE_LENGTH_LIMIT for line in text.splitlines()
    ):
        encoding, text = "quoted-printable", utf8_charset_qp.body_encode(body)
        body = text.encode("ascii")
    else:
        encoding = "7bit" if text.isascii() else "8bit"
    if "\r" in text or "\n" in text:
        body = _LINE_BREAKS.sub("\r\n", text).encode("utf-8")
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\nMIME-Version: 1.0\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    ).encode("ascii") + body


def compose_email(
    *,
    from_email: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    headers: dict[str, str],
    boundary: str | None = None,
    date: str | None = None,
) -> bytes | None:
    """The bytes Django's `EmailMultiAlternatives(subject, text, from_email, [to],
    headers=headers)` with `html` attached as text/html would send (`message().as_bytes(
    linesep="\\r\\n")`), or None for a message Django writes differently (an empty text:
    no text part; no Message-ID in `headers`: Django makes one up). Raises BadHeaderError (a
    ValueError) for a header with a line break, as Django does."""
    if not text or not any(name.lower() == "message-id" for name in headers):
        return None
    parts = [_text_part(text, "plain"), _text_part(html, "html")]
    if boundary is None:
        while True:
            boundary = f"{'=' * 15}{_random.randrange(sys.maxsize):0{_BOUNDARY_DIGITS}d}=="
            if boundary not in text and boundary not in html:
                break
    lines = [
        f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'
        "MIME-Version: 1.0\r\n".encode("ascii"),
        _header_line("Subject", subject),
        _header_line("From", headers.get("From", from_email)),
        _header_line("To", to),
    ]
    if not any(name.lower() == "date" for name in headers):
        lines.append(
            _header_line("Date", date or formatdate(localtime=settings.EMAIL_USE_LOCALTIME))
        )
    lines += [
        _header_line(name, value)
        for name, value in headers.items()
        if name.lower() not in {"from", "to", "cc", "reply-to"}
    ]
    delimiter = f"--{boundary}".encode("ascii")
    return b"".join(
        [
            *lines,
            b"\r\n",
            delimiter,
            b"\r\n",
            parts[0],
            b"\r\n",
            delimiter,
            b"\r\n",
            parts[1],
            b"\r\n",
            delimiter,
            b"--\r\n",
        ]
    )


_LINE_START_DOT = re.compile(rb"(?m)^\.")


def _reset(smtp: smtplib.SMTP) -> None:
    """RSET after a refusal, as smtplib's sendmail does (a connection already gone stays gone)."""
    with contextlib.suppress(smtplib.SMTPServerDisconnected):
        smtp.rset()


def sendmail_pipelined(smtp: smtplib.SMTP, from_addr: str, to_addr: str, msg: bytes) -> None:
    """smtplib's `sendmail(from_addr, [to_addr], msg)` with the envelope pipelined (RFC 2920)
    when the server offers PIPELINING: MAIL, RCPT and DATA go out in one write and their three
    replies are read after, so a message costs two round trips instead of four (half the
    waiting on a remote provider, half the wake-ups of both ends on a local one). smtplib has
    no pipelining. The replies are judged as sendmail judges them, raising the same exceptions
    (SMTPSenderRefused, SMTPRecipientsRefused, SMTPDataError; a 421 closes the connection,
    any other refusal is followed by RSET). Without PIPELINING: smtplib's own sendmail."""
    smtp.ehlo_or_helo_if_needed()
    if not (smtp.does_esmtp and smtp.has_extn("pipelining")):
        smtp.sendmail(from_addr, [to_addr], msg)
        return
    size = f" size={len(msg)}" if smtp.has_extn("size") else ""
    envelope = (
        f"mail FROM:{smtplib.quoteaddr(from_addr)}{size}\r\n"
        f"rcpt TO:{smtplib.quoteaddr(to_addr)}\r\n"
        "data\r\n"
    )
    smtp.send(envelope.encode(smtp.command_encoding))
    mail, rcpt, data = smtp.getreply(), smtp.getreply(), smtp.getreply()
    if data[0] == 354 and (mail[0] != 250 or rcpt[0] not in (250, 251)):
        # A server that took DATA although it refused the envelope gets an empty message, which
        # it refuses (RFC 2920, 3.1): nothing is delivered.
        smtp.send(b".\r\n")
        data = smtp.getreply()
    closed = 421 in (mail[0], rcpt[0], data[0])
    if closed:
        smtp.close()
    refusal: smtplib.SMTPException | None = None
    if mail[0] != 250:
        refusal = smtplib.SMTPSenderRefused(mail[0], mail[1], from_addr)
    elif rcpt[0] not in (250, 251):
        refusal = smtplib.SMTPRecipientsRefused({to_addr: rcpt})
    elif data[0] != 354:
        refusal = smtplib.SMTPDataError(*data)
    if refusal is not None:
        if not closed:
            _reset(smtp)
        raise refusal
    quoted = _LINE_START_DOT.sub(b"..", msg)
    smtp.send(quoted + (b".\r\n" if quoted.endswith(b"\r\n") else b"\r\n.\r\n"))
    code, reply = smtp.getreply()
    if code != 250:
        if code == 421:
            smtp.close()
        else:
            _reset(smtp)
        raise smtplib.SMTPDataError(code, reply)


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
        self._from: str | None = None

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
        headers = {**message.headers, "Message-ID": message_id}
        try:
            data = self._composed(message, connection, headers)
            if data is not None:
                # What Django's SMTP backend does with its message's bytes, minus the objects.
                sendmail_pipelined(
                    connection.connection,
                    self._envelope_from(),
                    _envelope_address(message.to_email),
                    data,
                )
            else:
                email = EmailMultiAlternatives(
                    subject=message.subject,
                    body=message.text,
                    from_email=settings.DEFAULT_FROM_EMAIL,
                    to=[message.to_email],
                    headers=headers,
                    connection=connection,
                )
                email.attach_alternative(message.html, "text/html")
                email.send(fail_silently=False)
        except ValueError as exc:  # an address that cannot be parsed, a header with a line break
            raise PermanentDeliveryError(f"cannot compose the message: {exc}") from exc
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

    @staticmethod
    def _composed(
        message: OutboundMessage, connection: Any, headers: dict[str, str]
    ) -> bytes | None:
        """The message's bytes over Django's own SMTP backend (a subclass, DKIM signing say,
        keeps its own send), else None: Django's objects then build and send it."""
        if (
            type(connection) is not SmtpEmailBackend
            or connection.connection is None
            or settings.DEFAULT_CHARSET.lower() != "utf-8"
        ):
            return None
        return compose_email(
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=message.to_email,
            subject=message.subject,
            text=message.text,
            html=message.html,
            headers=headers,
        )

    def _envelope_from(self) -> str:
        # The same sender for every message: sanitized once per chunk.
        if self._from is None:
            self._from = sanitize_address(settings.DEFAULT_FROM_EMAIL, "utf-8")
        return self._from

    def close(self) -> None:
        for connection in self.connections:
            # The messages are already accepted; a failed QUIT changes nothing.
            with contextlib.suppress(OSError, smtplib.SMTPException):
                connection.close()
        self.connections = []
        self.idle = queue.SimpleQueue()
