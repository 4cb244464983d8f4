"""The coupon channel: the code was issued at dispatch; delivering it means making it available
through the API (GET /api/v1/customers/{external_id}/coupons), so sending only confirms it."""

from __future__ import annotations

from campaigns.channels.base import OutboundMessage, PermanentDeliveryError, SerialChannel


class CouponChannel(SerialChannel):
    name = "coupon"

    def open(self) -> None:
        pass

    def send(self, message: OutboundMessage) -> str:
        if not message.coupon_code:
            raise PermanentDeliveryError("no coupon was issued for this intervention")
        return message.coupon_code

    def close(self) -> None:
        pass
