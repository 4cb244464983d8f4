"""Real local servers for delivery tests: SMTP (aiosmtpd) and an HTTP webhook (http.server)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SmtpRecorder:
    """Accepts every message unless `replies` (recipient → queued replies) or `drops`
    (recipients whose next message gets the connection closed, unanswered) say otherwise."""

    messages: list[EmailMessage] = field(default_factory=list)
    replies: dict[str, list[str]] = field(default_factory=dict)  # recipient → queued replies
    drops: set[str] = field(default_factory=set)
    delay: float = 0.0  # seconds before each answer: a slow provider
    pipelining: bool = True  # offer PIPELINING (RFC 2920) in the EHLO reply, as most do
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)  # refusals of RCPT TO

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        offered = ["250-PIPELINING"] if self.pipelining else []
        return [*responses[:-1], *offered, responses[-1]]  # the last line ends the reply

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        queued = self.rcpt_replies.get(address)
        if queued:
            return queued.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        for rcpt in envelope.rcpt_tos:
            if rcpt in self.drops:
                self.drops.discard(rcpt)
                server.transport.close()
                return "451 never seen: the connection is gone"
            queued = self.replies.get(rcpt)
            if queued:
                return queued.pop(0)
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"

    def recipients(self) -> list[str]:
        return [str(m["To"]) for m in self.messages]


@contextmanager
def smtp_server(recorder: SmtpRecorder | None = None) -> Iterator[tuple[SmtpRecorder, int]]:
    """A local SMTP server answering through `recorder` (a fresh SmtpRecorder by default)."""
    recorder = recorder or SmtpRecorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


@dataclass
class StrictPipeliningServer:
    """An SMTP server that offers PIPELINING and insists on it: it answers MAIL only once the
    RCPT and DATA sent with it have arrived (a client waiting for MAIL's reply first is told
    503 and disconnected after `patience` seconds). Keeps each message's bytes as received,
    dot-stuffing undone, and how many times a client waited on it (`unpipelined`)."""

    patience: float = 2.0
    messages: list[bytes] = field(default_factory=list)
    unpipelined: int = 0

    def serve(self, sock: socket.socket) -> None:
        with sock, sock.makefile("rwb") as stream:
            sock.settimeout(self.patience)

            def reply(*lines: bytes) -> None:
                stream.write(b"".join(lines))
                stream.flush()

            reply(b"220 strict ESMTP\r\n")
            while line := stream.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    reply(b"250-strict\r\n250-PIPELINING\r\n250 SIZE 10000000\r\n")
                elif verb == b"MAIL":
                    try:
                        rest = [stream.readline(), stream.readline()]
                    except TimeoutError:
                        self.unpipelined += 1
                        reply(b"503 5.5.0 send RCPT and DATA with MAIL\r\n")
                        return
                    assert rest[0][:4].upper() == b"RCPT" and rest[1][:4].upper() == b"DATA"
                    reply(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go ahead\r\n")
                    body = []
                    while (data := stream.readline()) != b".\r\n":
                        body.append(data[1:] if data.startswith(b"..") else data)
                    self.messages.append(b"".join(body))
                    reply(f"250 2.0.0 queued as {len(self.messages)}\r\n".encode())
                elif verb == b"QUIT":
                    reply(b"221 bye\r\n")
                    return
                else:  # RSET, NOOP
                    reply(b"250 ok\r\n")


@contextmanager
def strict_pipelining_server() -> Iterator[tuple[StrictPipeliningServer, int]]:
    server = StrictPipeliningServer()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=server.serve, args=(sock,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server, int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        listener.close()


@dataclass
class WebhookRecorder:
    secret: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # queued reply codes; then 200

    def valid(self) -> bool:
        return all(r["signature_ok"] for r in self.requests)


@contextmanager
def webhook_server(secret: str) -> Iterator[tuple[WebhookRecorder, str]]:
    recorder = WebhookRecorder(secret=secret)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            timestamp = self.headers.get("X-Retention-Timestamp", "")
            expected = (
                "sha256="
                + hmac.new(
                    secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
                ).hexdigest()
            )
            status = recorder.statuses.pop(0) if recorder.statuses else 200
            if status == 200:
                recorder.requests.append(
                    {
                        "json": json.loads(body),
                        "idempotency_key": self.headers.get("Idempotency-Key"),
                        "signature_ok": hmac.compare_digest(
                            expected, self.headers.get("X-Retention-Signature", "")
                        ),
                    }
                )
            reply = json.dumps({"id": f"msg-{len(recorder.requests)}"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder, f"http://127.0.0.1:{server.server_address[1]}/sms"
    finally:
        server.shutdown()
        server.server_close()
