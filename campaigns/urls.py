from django.urls import path

from campaigns import apis

urlpatterns = [
    path(
        "customers/<str:external_id>/coupons",
        apis.CustomerCouponsApi.as_view(),
        name="customer-coupons",
    ),
    path("coupons/<str:code>", apis.CouponDetailApi.as_view(), name="coupon-detail"),
]
