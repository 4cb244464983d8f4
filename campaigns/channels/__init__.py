"""Delivery channels behind one small interface (`ChannelBackend`): email, SMS, coupon, callback.

The relay (campaigns.services.interventions_relay) claims an intervention, builds an
`OutboundMessage` and calls `backend.send(message)`; the backend returns the provider's message
id or raises `TransientDeliveryError` (retried with backoff) or `PermanentDeliveryError`
(recorded as failed). Backends are chosen per settings (EMAIL_BACKEND, SMS_BACKEND).
"""

from __future__ import annotations

from campaigns.channels.base import (
    ChannelBackend,
    DeliveryError,
    OutboundMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
)


def channel_backend(name: str) -> ChannelBackend:
    """A fresh backend for a contact channel (email, sms, coupon, callback)."""
    if name == "email":
        from campaigns.channels.email import EmailChannel

        return EmailChannel()
    if name == "sms":
        from campaigns.channels.sms import sms_backend

        return sms_backend()
    if name == "coupon":
        from campaigns.channels.coupon import CouponChannel

        return CouponChannel()
    if name == "callback":
        from campaigns.channels.callback import CallbackChannel

        return CallbackChannel()
    raise ValueError(f"unknown channel {name!r}")


__all__ = [
    "ChannelBackend",
    "DeliveryError",
    "OutboundMessage",
    "PermanentDeliveryError",
    "TransientDeliveryError",
    "channel_backend",
]
