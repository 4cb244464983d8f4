"""How long a push notification's title and body may be before phones and browsers cut them,
and whether the whole payload fits the push services' limit. Pure: no Django.

The limits are what the platforms show without expanding the notification (Android shows about
65 characters of title and 240 of body collapsed; iOS about 50 and 178 on the lock screen);
the payload limit is FCM's and Web Push's 4096 bytes (RFC 8030 servers must accept at least
4096 bytes of encrypted payload, less the encryption overhead)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

TITLE_LIMIT = 65
BODY_LIMIT = 240
# aes128gcm adds a 86-byte header and a 17-byte tag and pad delimiter to what we send.
PAYLOAD_LIMIT_BYTES = 4096 - 103


@dataclass(frozen=True)
class PushLength:
    title_characters: int
    body_characters: int
    payload_bytes: int
    warnings: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"title {self.title_characters}/{TITLE_LIMIT} characters, "
            f"body {self.body_characters}/{BODY_LIMIT} characters, "
            f"payload {self.payload_bytes:,}/{PAYLOAD_LIMIT_BYTES:,} bytes"
        )


def push_payload(
    *, title: str, body: str, deep_link: str = "", image_url: str = "", intervention_id: int = 0
) -> dict[str, object]:
    """The JSON document a Web Push service worker receives (docs/channels.md)."""
    payload: dict[str, object] = {"title": title, "body": body}
    if deep_link:
        payload["url"] = deep_link
    if image_url:
        payload["image"] = image_url
    if intervention_id:
        payload["intervention"] = intervention_id
    return payload


def push_length(*, title: str, body: str, deep_link: str = "", image_url: str = "") -> PushLength:
    """Characters of title and body against what the platforms show, payload bytes against
    what the push services accept, and a warning for each limit passed."""
    payload = push_payload(title=title, body=body, deep_link=deep_link, image_url=image_url)
    size = len(json.dumps(payload, ensure_ascii=False).encode())
    warnings: list[str] = []
    if not title.strip():
        warnings.append("The title is empty: phones show the app's name instead.")
    if len(title) > TITLE_LIMIT:
        warnings.append(
            f"The title has {len(title)} characters: phones cut it after about {TITLE_LIMIT}."
        )
    if len(body) > BODY_LIMIT:
        warnings.append(
            f"The body has {len(body)} characters: phones cut it after about {BODY_LIMIT}."
        )
    if size > PAYLOAD_LIMIT_BYTES:
        warnings.append(
            f"The message is {size:,} bytes: push services refuse more than "
            f"{PAYLOAD_LIMIT_BYTES:,}; shorten it."
        )
    return PushLength(len(title), len(body), size, warnings)
