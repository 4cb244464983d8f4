"""Campaign API: a customer's coupons and a coupon by code (for the shop to show and check)."""

from __future__ import annotations

from typing import ClassVar

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns import selectors
from customers.models import ApiScope, Customer


class CouponOut(serializers.Serializer):
    code = serializers.CharField()
    customer = serializers.CharField(source="customer.external_id")
    kind = serializers.CharField()
    value = serializers.DecimalField(max_digits=12, decimal_places=2)
    offer = serializers.CharField(source="offer.name")
    description = serializers.CharField(source="offer.describe")
    campaign = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField()
    redeemed_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_campaign(self, coupon: object) -> str:
        intervention = getattr(coupon, "intervention", None)
        return intervention.campaign.name if intervention else ""


class CustomerCouponsApi(APIView):
    required_scopes: ClassVar[dict[str, str]] = {"GET": ApiScope.CUSTOMERS_READ}

    @extend_schema(responses=CouponOut(many=True), summary="A customer's coupons, newest first")
    def get(self, request: Request, external_id: str) -> Response:
        customer = get_object_or_404(Customer, external_id=external_id)
        coupons = selectors.customer_coupons(customer=customer)
        return Response(CouponOut(coupons, many=True).data)


class CouponDetailApi(APIView):
    required_scopes: ClassVar[dict[str, str]] = {"GET": ApiScope.CUSTOMERS_READ}

    @extend_schema(responses=CouponOut, summary="A coupon by its code (case-insensitive)")
    def get(self, request: Request, code: str) -> Response:
        coupon = selectors.coupon_by_code(code=code)
        if coupon is None:
            raise NotFound("No coupon has this code.")
        return Response(CouponOut(coupon).data)
