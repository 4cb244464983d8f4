"""Coupon redemption: redeem a coupon once, for one order, and log it as a `redeemed` response
of the coupon's intervention; the discount a redemption grants.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction
from django.utils import timezone

from campaigns import selectors
from campaigns.models import Coupon, OfferKind, Response, ResponseKind
from campaigns.services.responses import response_record
from customers.models import Order

CENT = Decimal("0.01")


class CouponRedeemError(Exception):
    """A coupon cannot be redeemed: `code` is not_found (404), coupon_expired or
    coupon_already_redeemed (409)."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass(frozen=True)
class Redemption:
    coupon: Coupon
    response: Response | None  # None for a coupon issued outside any campaign
    replay: bool


def coupon_discount(*, coupon: Coupon, amount: Decimal) -> Decimal:
    """What redeeming the coupon on an order of `amount` costs: the discount granted.
    Percent: that share of the amount; amount-off: at most the amount; free shipping (and any
    other kind): the offer's expected unit cost."""
    if coupon.kind == OfferKind.PERCENT_COUPON:
        discount = amount * Decimal(coupon.value) / 100
    elif coupon.kind == OfferKind.AMOUNT_COUPON:
        discount = min(Decimal(coupon.value), amount)
    else:
        discount = Decimal(coupon.offer.unit_cost)
    return discount.quantize(CENT, rounding=ROUND_HALF_UP)


def coupon_redeem(
    *,
    code: str,
    order_external_id: str,
    amount: Decimal,
    redeemed_at: datetime | None = None,
) -> Redemption:
    """Redeem a coupon once, for one order. The same order again is a replay (the original
    result); another order, an expired or an unknown code raise CouponRedeemError. The
    redemption is logged as a `redeemed` response of the coupon's intervention."""
    redeemed_at = redeemed_at or timezone.now()
    coupon = selectors.coupon_by_code(code=code)
    if coupon is None:
        raise CouponRedeemError("not_found", "No coupon has this code.", 404)
    with transaction.atomic():
        won = Coupon.objects.filter(pk=coupon.pk, redeemed_at__isnull=True).exists() and (
            redeemed_at <= coupon.expires_at
        )
        if won:
            discount = coupon_discount(coupon=coupon, amount=amount)
            order = Order.objects.filter(external_id=order_external_id).first()
            # Compare-and-set: of two concurrent redemptions exactly one updates the row.
            won = bool(
                Coupon.objects.filter(pk=coupon.pk, redeemed_at__isnull=True).update(
                    redeemed_at=redeemed_at,
                    redeemed_order=order,
                    redeemed_order_external_id=order_external_id,
                    redeemed_amount=amount,
                    redeemed_discount=discount,
                )
            )
        coupon.refresh_from_db()
        if not won:
            if coupon.redeemed_at is not None:
                if coupon.redeemed_order_external_id == order_external_id:
                    response = _redemption_response(coupon)
                    return Redemption(coupon=coupon, response=response, replay=True)
                raise CouponRedeemError(
                    "coupon_already_redeemed",
                    f"This coupon was already redeemed on {coupon.redeemed_at:%Y-%m-%d %H:%M} "
                    "UTC for another order.",
                    409,
                )
            raise CouponRedeemError(
                "coupon_expired",
                f"This coupon expired on {coupon.expires_at:%Y-%m-%d %H:%M} UTC.",
                409,
            )
        response = None
        if coupon.intervention_id:
            response, _ = response_record(
                intervention=coupon.intervention,  # type: ignore[arg-type]
                kind=ResponseKind.REDEEMED,
                occurred_at=redeemed_at,
                idempotency_key=f"coupon-{coupon.pk}-redeemed",
                revenue=amount,
                order_external_id=order_external_id,
                payload={"code": coupon.code, "discount": str(coupon.redeemed_discount)},
            )
    return Redemption(coupon=coupon, response=response, replay=False)


def _redemption_response(coupon: Coupon) -> Response | None:
    return Response.objects.filter(
        client=None, idempotency_key=f"coupon-{coupon.pk}-redeemed"
    ).first()
