"""A real local push service for push tests and the bench: one HTTP server that acts as a Web
Push service (any POST under /wp/), as Google's OAuth2 token endpoint (POST /token) and as the
FCM HTTP v1 send endpoint (POST /v1/projects/<id>/messages:send). Answers can be queued per Web
Push path or per FCM token; otherwise every message is accepted."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.campaigns.servers import free_port


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscription:
    """A browser's push subscription: its own key pair and auth secret, as a browser makes it."""

    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @classmethod
    def new(cls, endpoint: str) -> Subscription:
        return cls(endpoint, ec.generate_private_key(ec.SECP256R1()), os.urandom(16))

    @property
    def p256dh(self) -> str:
        return b64url(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    def as_json(self) -> dict[str, Any]:
        """What `PushSubscription.toJSON()` gives in a browser."""
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": self.p256dh, "auth": b64url(self.auth)},
        }

    def decrypt(self, body: bytes) -> dict[str, Any]:
        """The payload, decrypted as the browser does (RFC 8291, aes128gcm)."""
        import http_ece

        plain = http_ece.decrypt(
            body, private_key=self.private_key, auth_secret=self.auth, version="aes128gcm"
        )
        return dict(json.loads(plain))


@dataclass
class PushService:
    base_url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    # Web Push: path → queued status codes; FCM: token → queued (status, error code) answers.
    web_answers: dict[str, list[int]] = field(default_factory=dict)
    fcm_answers: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    tokens_issued: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["kind"] == kind]

    def service_account_file(self, folder: Path) -> Path:
        """A service-account JSON file with a fresh RSA key whose token_uri is this server."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        info = {
            "type": "service_account",
            "project_id": "shop-app",
            "private_key_id": "k1",
            "private_key": pem,
            "client_email": "relay@shop-app.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": f"{self.base_url}/token",
        }
        path = folder / "service-account.json"
        path.write_text(json.dumps(info))
        return path


def _handler(service: PushService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real push services

        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None):
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            if self.path == "/token":
                form = parse_qs(body.decode())
                with service.lock:
                    service.tokens_issued += 1
                    token = f"access-{service.tokens_issued}"
                    service.requests.append({"kind": "token", "form": form, "headers": headers})
                answer = {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
                self._answer(200, json.dumps(answer).encode(), {"Content-Type": "application/json"})
                return
            if self.path.startswith("/v1/projects/"):
                message = json.loads(body)["message"]
                token = message["token"]
                with service.lock:
                    queued = service.fcm_answers.get(token) or []
                    status, code = queued.pop(0) if queued else (200, "")
                    service.requests.append(
                        {"kind": "fcm", "path": self.path, "headers": headers,
                         "message": message, "status": status}
                    )  # fmt: skip
                if status == 200:
                    name = f"projects/shop-app/messages/{len(service.requests)}"
                    self._answer(200, json.dumps({"name": name}).encode())
                    return
                error = {
                    "error": {
                        "code": status,
                        "message": f"{code or 'error'} for this token",
                        "status": code,
                        "details": [
                            {
                                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                "errorCode": code,
                            }
                        ],
                    }
                }
                self._answer(
                    status, json.dumps(error).encode(), {"Content-Type": "application/json"}
                )
                return
            with service.lock:
                queued = service.web_answers.get(self.path) or []
                status = queued.pop(0) if queued else 201
                service.requests.append(
                    {"kind": "webpush", "path": self.path, "headers": headers, "body": body,
                     "status": status}
                )  # fmt: skip
            location = {"Location": f"{service.base_url}/m/{len(service.requests)}"}
            self._answer(status, b"", location if status == 201 else {})

    return Handler


@contextmanager
def push_service() -> Iterator[PushService]:
    service = PushService()
    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(service))
    server.daemon_threads = True
    service.base_url = f"http://127.0.0.1:{port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
