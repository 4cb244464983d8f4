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
