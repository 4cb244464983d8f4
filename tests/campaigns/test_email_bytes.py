"""The email channel composes a message's bytes itself over SMTP (campaigns/channels/email.py):
they must be Django's `EmailMultiAlternatives` bytes exactly, whatever the message holds."""

from __future__ import annotations

import itertools
import random
import re
import string
from typing import Any

import pytest
from django.core.mail import EmailMultiAlternatives
from django.core.mail.backends.smtp import EmailBackend as SmtpEmailBackend
from django.core.mail.message import BadHeaderError, sanitize_address

from campaigns.channels.base import OutboundMessage, PermanentDeliveryError
from campaigns.channels.email import EmailChannel, _envelope_address, compose_email
from tests.campaigns.servers import SmtpRecorder

FROM = "Retention <noreply@localhost>"
SUBJECTS = [
    "We miss you",
    "We miss you, Jane — 10% off",  # non-ASCII: encoded words
    "x" * 70,  # at the fold width
    "y" * 90,  # over it: folded
    "a  b ; c, d",
    " leading and trailing ",
    "Ünïcode " * 12,  # long and non-ASCII
    "tab\there",
    "=?utf-8?q?looks_encoded?=",
    "",
]
TEXTS = [
    "Hello\n",
    "Hello",
    "Hi Jane\r\nline2\rline3\n\n",  # every line break becomes CRLF
    "é\n" * 3,  # 8bit
    "x" * 1000,  # a line over 998 bytes: quoted-printable
    "a\n" + "é" * 600 + "\n",  # the same in UTF-8 bytes
    "From here\n.\n..\n",
    "line\u2028separator\n",
    "\x0cform feed\n",
]
RECIPIENTS = [
    "c1@example.com",
    "Jane Doe <jane@example.com>",
    "jané@exämple.com",  # non-ASCII: sanitized, the domain in punycode
    "o'neil@example.com",
    '"quoted"@example.com',
]
HEADERS: list[dict[str, str]] = [
    {},
    {"List-Unsubscribe": "<https://x.example/u/abc>", "List-Unsubscribe-Post": "One-Click"},
    {"List-Unsubscribe": "<https://x.example/unsubscribe/" + "t" * 120 + ">", "X-U": "ok"},
    {"X-Tag": "été"},
    {"From": "Other <o@x.example>"},
    {"Date": "Mon, 30 Nov 2026 14:17:56 -0000"},
]


def djangos(
    *, to: str, subject: str, text: str, html: str, headers: dict[str, str]
) -> bytes | None:
    email = EmailMultiAlternatives(
        subject=subject, body=text, from_email=FROM, to=[to], headers=headers
    )
    email.attach_alternative(html, "text/html")
    try:
        return bytes(email.message().as_bytes(linesep="\r\n"))  # type: ignore[call-arg]
    except ValueError:
        return None  # Django refuses it: so must we


def compare(*, to: str, subject: str, text: str, html: str, headers: dict[str, str]) -> bool:
    """Whether the composed bytes are Django's (with Django's random boundary and Date); False
    when the message went Django's way instead."""
    headers = {**headers, "Message-ID": "<iv-7-abc@retention.local>"}
    expected = djangos(to=to, subject=subject, text=text, html=html, headers=headers)
    kwargs: dict[str, Any] = dict(to=to, subject=subject, text=text, html=html, headers=headers)
    if expected is None:
        with pytest.raises(ValueError):
            compose_email(from_email=FROM, **kwargs)
        return False
    boundary = re.search(rb'boundary="([^"]+)"', expected)
    date = re.search(rb"\r\nDate: ([^\r]+)\r\n", expected)
    assert boundary and date
    ours = compose_email(
        from_email=FROM, boundary=boundary[1].decode(), date=date[1].decode(), **kwargs
    )
    if ours is None:
        return False
    assert ours == expected, (subject, text[:40], to, headers)
    return True


def test_the_bytes_are_djangos_for_awkward_messages() -> None:
    composed = 0
    html_of = itertools.cycle(TEXTS[::-1])
    for subject, text, to, headers in itertools.product(SUBJECTS, TEXTS, RECIPIENTS, HEADERS):
        html = f"<p>{next(html_of)}</p>"
        composed += compare(to=to, subject=subject, text=text, html=html, headers=headers)
    # Every combination Django can write is composed here (none fell back to Django's objects).
    assert composed == len(SUBJECTS) * len(TEXTS) * len(RECIPIENTS) * len(HEADERS)


def test_the_bytes_are_djangos_for_random_messages() -> None:
    rng = random.Random(7)
    alphabet = string.printable[:95] + "  ,;=?\"'<>()éü—\t"

    def text(longest: int) -> str:
        return "".join(rng.choice(alphabet + "\n\r") for _ in range(rng.randint(1, longest)))

    composed = 0
    for _ in range(1500):
        subject = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 90)))
        headers = {"X-Value": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))}
        longest = rng.choice([200, 2400])
        composed += compare(
            to="c@example.com",
            subject=subject,
            text=text(longest),
            html=text(longest),
            headers=headers,
        )
    assert composed > 1000


def test_an_empty_text_or_no_message_id_goes_djangos_way() -> None:
    message = dict(from_email=FROM, to="c@example.com", subject="s", html="<p>h</p>")
    assert compose_email(text="", headers={"Message-ID": "<a@b>"}, **message) is None
    assert compose_email(text="t", headers={}, **message) is None


def test_a_header_with_a_line_break_is_refused_like_django_refuses_it() -> None:
    for headers, subject in (({}, "Hi\nBcc: everyone@example.com"), ({"X-A": "a\rb"}, "Hi")):
        with pytest.raises(BadHeaderError):
            compose_email(
                from_email=FROM,
                to="c@example.com",
                subject=subject,
                text="t",
                html="<p>h</p>",
                headers={**headers, "Message-ID": "<a@b>"},
            )


@pytest.mark.parametrize(
    "address",
    [
        "c1@example.com",
        "first.last+tag@sub.example.co.uk",
        "UPPER_case-1@EXAMPLE.COM",
        "o'neil@example.com",
        "jané@exämple.com",
        "Jane Doe <jane@example.com>",
        '"quoted local"@example.com',
    ],
)
def test_the_envelope_address_is_djangos(address: str) -> None:
    assert _envelope_address(address) == sanitize_address(address, "utf-8")


def message(**fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "intervention_id": 1,
        "idempotency_key": "iv-1-abc",
        "customer_id": 1,
        "to_email": "jane@example.com",
        "subject": "Jane, 15 % off — für Sie",
        "text": "Hi Jane, use CODE-1.\n",
        "html": "<p>" + "long line " * 150 + "</p>",  # 1,500 characters: quoted-printable
        "headers": {"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    }
    return OutboundMessage(**{**values, **fields})


def test_a_real_smtp_server_receives_the_composed_message(smtp: SmtpRecorder) -> None:
    channel = EmailChannel()
    channel.open()
    try:
        assert channel.send(message()) == "<iv-1-abc@retention.local>"
        with pytest.raises(PermanentDeliveryError, match="line"):
            channel.send(message(subject="Hi\nBcc: everyone@example.com"))
        with pytest.raises(PermanentDeliveryError, match="address"):
            channel.send(message(to_email="not an address <"))
        channel.send(message(to_email="Jané Dœ <jane@exämple.com>", idempotency_key="iv-2"))
    finally:
        channel.close()
    assert len(smtp.messages) == 2  # the refused ones never reached the server
    first, second = smtp.messages
    assert first["Subject"] == "Jane, 15 % off — für Sie"
    assert first["Message-ID"] == "<iv-1-abc@retention.local>"
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    parts = {p.get_content_type(): p for p in first.iter_parts()}

    def content(part: Any) -> str:  # the server keeps the wire's CRLF line ends
        return str(part.get_content()).replace("\r\n", "\n")

    assert content(parts["text/plain"]) == "Hi Jane, use CODE-1.\n"
    assert parts["text/html"]["Content-Transfer-Encoding"] == "quoted-printable"
    assert content(parts["text/html"]) == "<p>" + "long line " * 150 + "</p>"
    assert second["To"].addresses[0].display_name == "Jané Dœ"
    assert second["To"].addresses[0].domain == "xn--exmple-cua.com"


class SigningBackend(SmtpEmailBackend):
    """A project's own SMTP backend (DKIM signing, say): its `_send` must still run."""

    sent: list[str] = []

    def _send(self, email_message: Any) -> bool:
        SigningBackend.sent.append(email_message.to[0])
        return bool(super()._send(email_message))  # type: ignore[misc]


def test_a_subclass_of_the_smtp_backend_keeps_its_own_send(
    smtp: SmtpRecorder, settings: Any
) -> None:
    settings.EMAIL_BACKEND = f"{__name__}.SigningBackend"
    SigningBackend.sent = []
    channel = EmailChannel()
    channel.open()
    try:
        channel.send(message())
    finally:
        channel.close()
    assert SigningBackend.sent == ["jane@example.com"]
    assert len(smtp.messages) == 1
