"""The email channel's SMTP transaction with PIPELINING (RFC 2920): two round trips a message
instead of four where the server offers it, and every refusal judged as smtplib's sendmail
judges it. Real servers on local ports: a strict one that answers MAIL only when RCPT and DATA
came with it, and aiosmtpd offering PIPELINING with queued refusals."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from campaigns.channels.base import (
    OutboundMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from campaigns.channels.email import EmailChannel, sendmail_pipelined
from tests.campaigns.conftest import point_email_at
from tests.campaigns.servers import (
    SmtpRecorder,
    StrictPipeliningServer,
    smtp_server,
    strict_pipelining_server,
)


def message(**fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "intervention_id": 1,
        "idempotency_key": "iv-1",
        "customer_id": 1,
        "to_email": "jane@example.com",
        "to_phone": "",
        "subject": "We miss you",
        "text": "Hi Jane,\n.a line that starts with a dot\n.\nthe end\n",
        "html": "<p>Hi Jane</p>",
        "due_at": datetime(2026, 11, 30, tzinfo=UTC),
    }
    return OutboundMessage(**{**values, **fields})


@pytest.fixture
def strict(settings: Any) -> Iterator[StrictPipeliningServer]:
    with strict_pipelining_server() as (server, port):
        point_email_at(settings, port)
        yield server


def _send_all(*messages: OutboundMessage) -> list[str | Exception]:
    channel = EmailChannel()
    channel.open()
    results: list[str | Exception] = []
    try:
        for m in messages:
            try:
                results.append(channel.send(m))
            except (PermanentDeliveryError, TransientDeliveryError) as exc:
                results.append(exc)
    finally:
        channel.close()
    return results


def test_a_server_offering_pipelining_gets_the_envelope_in_one_write(
    strict: StrictPipeliningServer,
) -> None:
    sent = _send_all(message(), message(idempotency_key="iv-2", to_email="joe@example.com"))
    assert sent == ["<iv-1@retention.local>", "<iv-2@retention.local>"]
    assert strict.unpipelined == 0
    assert len(strict.messages) == 2
    first = strict.messages[0]
    # Dot-stuffed on the wire, restored by the server: the text arrives as written.
    assert b"\r\n.a line that starts with a dot\r\n.\r\nthe end\r\n" in first
    assert b"Message-ID: <iv-1@retention.local>\r\n" in first
    assert b"To: joe@example.com\r\n" in strict.messages[1]


def test_the_strict_server_fails_a_client_that_waits_for_each_reply(
    strict: StrictPipeliningServer, settings: Any
) -> None:
    """The server above can tell: smtplib's own sendmail (one command, one reply) is refused."""
    client = smtplib.SMTP(settings.EMAIL_HOST, settings.EMAIL_PORT, timeout=10)
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        client.sendmail("shop@example.com", ["jane@example.com"], b"Subject: x\r\n\r\nhi\r\n")
    assert refused.value.smtp_code == 503
    assert strict.unpipelined == 1 and strict.messages == []


def test_refusals_are_judged_as_sendmail_judges_them_and_the_session_goes_on(
    smtp: SmtpRecorder,
) -> None:
    smtp.rcpt_replies = {
        "gone@example.com": ["550 5.1.1 no such mailbox"],
        "full@example.com": ["452 4.2.2 mailbox full"],
    }
    smtp.replies = {"spam@example.com": ["554 5.7.1 looks like spam"]}
    sent = _send_all(
        message(to_email="gone@example.com", idempotency_key="iv-1"),
        message(to_email="full@example.com", idempotency_key="iv-2"),
        message(to_email="spam@example.com", idempotency_key="iv-3"),
        message(to_email="jane@example.com", idempotency_key="iv-4"),
    )
    assert isinstance(sent[0], PermanentDeliveryError) and "550" in str(sent[0])
    assert isinstance(sent[1], TransientDeliveryError) and "452" in str(sent[1])
    assert isinstance(sent[2], PermanentDeliveryError) and "554" in str(sent[2])
    # After each refusal the transaction was reset: the next message on the same
    # connection is delivered, to its own recipient only.
    assert sent[3] == "<iv-4@retention.local>"
    assert smtp.recipients() == ["jane@example.com"]


def test_a_421_closes_the_connection_and_is_transient(smtp: SmtpRecorder) -> None:
    smtp.rcpt_replies = {"jane@example.com": ["421 4.3.2 shutting down"]}
    channel = EmailChannel()
    channel.open()
    try:
        with pytest.raises(TransientDeliveryError, match="421"):
            channel.send(message())
        session = channel.connections[0].connection
        assert session.sock is None  # closed, as smtplib closes on a 421
    finally:
        channel.close()
    assert smtp.messages == []


def test_without_pipelining_the_standard_sendmail_runs() -> None:
    with smtp_server(SmtpRecorder(pipelining=False)) as (smtp, port):
        client = smtplib.SMTP("127.0.0.1", port, timeout=10)
        try:
            data = b"Subject: x\r\n\r\n.\r\n"
            sendmail_pipelined(client, "shop@example.com", "jane@example.com", data)
            assert not client.has_extn("pipelining")
        finally:
            client.quit()
    assert [m["Subject"] for m in smtp.messages] == ["x"]
