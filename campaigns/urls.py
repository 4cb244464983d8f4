from django.urls import path

from campaigns import apis

urlpatterns = [
    path(
        "customers/<segment:external_id>/coupons",
        apis.CustomerCouponsApi.as_view(),
        name="customer-coupons",
    ),
    path(
        "customers/<segment:external_id>/messages",
        apis.CustomerMessagesApi.as_view(),
        name="customer-messages",
    ),
    path(
        "customers/<segment:external_id>/messages/<segment:message_id>/read",
        apis.InboxReadApi.as_view(),
        name="customer-message-read",
    ),
    path(
        "customers/<segment:external_id>/messages/<segment:message_id>/dismiss",
        apis.InboxDismissApi.as_view(),
        name="customer-message-dismiss",
    ),
    path("coupons/<segment:code>", apis.CouponDetailApi.as_view(), name="coupon-detail"),
    path("coupons/<segment:code>/redeem", apis.CouponRedeemApi.as_view(), name="coupon-redeem"),
    path("responses", apis.ResponsesApi.as_view(), name="responses"),
    path("webhooks/email", apis.EmailWebhookApi.as_view(), name="webhook-email"),
    path("webhooks/sms", apis.SmsWebhookApi.as_view(), name="webhook-sms"),
    path(
        "campaigns/<segment:campaign>/uplift",
        apis.CampaignUpliftApi.as_view(),
        name="campaign-uplift",
    ),
]
