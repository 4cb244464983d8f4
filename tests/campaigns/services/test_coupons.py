"""Coupon redemption at the service level: once per coupon, a retry for the same order is a
replay, the discount per offer kind, and the `redeemed` response it logs."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from campaigns.models import Campaign, Coupon, Response
from campaigns.services.coupons import CouponRedeemError, coupon_discount, coupon_redeem
from tests.campaigns.conftest import NOON, make_customers, make_offer

pytestmark = pytest.mark.django_db


def a_coupon(campaign: Campaign) -> Coupon:
    coupon = Coupon.objects.filter(intervention__campaign=campaign).order_by("pk").first()
    assert coupon is not None
    return coupon


@pytest.mark.parametrize(
    ("kind", "value", "amount", "discount"),
    [
        ("percent_coupon", "15", "80.00", "12.00"),
        ("percent_coupon", "15", "0.10", "0.02"),  # rounded half up to the cent
        ("amount_coupon", "10", "80.00", "10.00"),
        ("amount_coupon", "10", "6.50", "6.50"),  # never more than the order
        ("free_shipping", "0", "80.00", "4.00"),  # the offer's expected unit cost
    ],
)
def test_the_discount_follows_the_offer_kind(
    kind: str, value: str, amount: str, discount: str
) -> None:
    offer = make_offer(name=kind, kind=kind, value=Decimal(value), unit_cost=Decimal("4"))
    coupon = Coupon(offer=offer, kind=kind, value=Decimal(value))
    assert coupon_discount(coupon=coupon, amount=Decimal(amount)) == Decimal(discount)


def test_a_coupon_is_redeemed_once_and_a_retry_is_a_replay(sent_campaign: Campaign) -> None:
    coupon = a_coupon(sent_campaign)
    when = NOON + timedelta(days=2)
    first = coupon_redeem(
        code=coupon.code.lower(), order_external_id="A-1", amount=Decimal("80"), redeemed_at=when
    )
    assert not first.replay and first.coupon.redeemed_discount == Decimal("12.00")
    assert first.response is not None and first.response.kind == "redeemed"
    assert first.response.revenue == Decimal("80") and first.response.occurred_at == when
    assert first.response.payload == {"code": coupon.code, "discount": "12.00"}
    retry = coupon_redeem(code=coupon.code, order_external_id="A-1", amount=Decimal("80"))
    assert retry.replay and retry.response is not None and retry.response.pk == first.response.pk
    with pytest.raises(CouponRedeemError) as refused:
        coupon_redeem(code=coupon.code, order_external_id="B-2", amount=Decimal("30"))
    assert (refused.value.code, refused.value.status) == ("coupon_already_redeemed", 409)
    coupon.refresh_from_db()
    assert coupon.redeemed_order_external_id == "A-1" and coupon.redeemed_at == when
    assert Response.objects.filter(kind="redeemed").count() == 1


def test_expired_and_unknown_codes_are_refused(sent_campaign: Campaign) -> None:
    coupon = a_coupon(sent_campaign)
    with pytest.raises(CouponRedeemError) as expired:
        coupon_redeem(
            code=coupon.code,
            order_external_id="A-1",
            amount=Decimal("10"),
            redeemed_at=coupon.expires_at + timedelta(seconds=1),
        )
    assert (expired.value.code, expired.value.status) == ("coupon_expired", 409)
    with pytest.raises(CouponRedeemError) as unknown:
        coupon_redeem(code="NOPE-NOPE", order_external_id="A-1", amount=Decimal("10"))
    assert (unknown.value.code, unknown.value.status) == ("not_found", 404)
    coupon.refresh_from_db()
    assert coupon.redeemed_at is None and not Response.objects.filter(kind="redeemed").exists()


def test_a_coupon_issued_outside_a_campaign_redeems_without_a_response() -> None:
    customer = make_customers(1)[0]
    offer = make_offer(kind="amount_coupon", value=Decimal("5"))
    Coupon.objects.create(
        code="ABCD-EFGH-JKLM-NPQR",
        customer=customer,
        offer=offer,
        kind="amount_coupon",
        value=Decimal("5"),
        expires_at=NOON + timedelta(days=30),
        created_at=NOON,
    )
    redemption = coupon_redeem(
        code="ABCD-EFGH-JKLM-NPQR", order_external_id="X", amount=Decimal("20"), redeemed_at=NOON
    )
    assert redemption.response is None and redemption.coupon.redeemed_discount == Decimal("5")
    assert not Response.objects.exists()
