"""Which backend delivers each contact channel (chosen per settings: EMAIL_BACKEND, SMS_BACKEND)."""

from __future__ import annotations

from campaigns.channels.base import ChannelBackend


def channel_backend(name: str) -> ChannelBackend:
    """A fresh backend for a contact channel (email, sms, coupon, callback, push, in_app)."""
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
    if name == "push":
        from campaigns.channels.push import PushChannel

        return PushChannel()
    if name == "in_app":
        from campaigns.channels.inapp import InAppChannel

        return InAppChannel()
    raise ValueError(f"unknown channel {name!r}")
