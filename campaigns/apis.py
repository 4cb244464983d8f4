"""Campaign API: coupons (show, check, redeem), responses (single or bulk, idempotent), signed
provider webhooks, and a campaign's uplift report."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal
from typing import Any, ClassVar, cast

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns import selectors
from campaigns.measurement.snapshots import uplift_report_compute, uplift_report_latest
from campaigns.models import ResponseKind
from campaigns.money import currency
from campaigns.services.coupons import CouponRedeemError, coupon_redeem
from campaigns.services.inbox import (
    InboxMessageNotFoundError,
    inbox_fetch,
    inbox_message_act,
)
from campaigns.services.responses import (
    IdempotencyConflictError,
    ResponseItem,
    ResponseItemsError,
    ResponseResult,
    provider_events_record,
    responses_record_batch,
    webhook_signature_valid,
)
from campaigns.uplift.costs import COST_BASIS
from campaigns.uplift.report import CampaignUpliftReport
from common.api import BulkValidationError, error_body, unknown_fields_refuse
from customers.models import ApiClient, ApiScope, Customer
from customers.validation import UNSTORABLE_TEXT, json_has_unstorable_text


class CouponOut(serializers.Serializer):
    code = serializers.CharField()
    customer = serializers.CharField(source="customer.external_id")
    kind = serializers.CharField()
    value = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.SerializerMethodField(
        help_text="ISO 4217 code of `value` when the coupon takes an amount off."
    )
    offer = serializers.CharField(source="offer.name")
    description = serializers.CharField(source="offer.describe")
    campaign = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField()
    redeemed_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_currency(self, coupon: object) -> str:
        return currency()

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


# --- the in-app inbox (docs/channels.md) -----------------------------------------------------


class InboxMessageOut(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    body = serializers.CharField()
    call_to_action = serializers.CharField(
        source="deep_link", help_text="Where a tap leads (a URL or app link); may be empty"
    )
    image_url = serializers.CharField(help_text="May be empty")
    coupon_code = serializers.CharField(help_text="May be empty")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(help_text="Not shown after this time")


class CustomerMessagesApi(APIView):
    """The customer's unread, unexpired in-app messages, newest first. The first fetch of a
    message records it delivered."""

    required_scopes: ClassVar[dict[str, str]] = {"GET": ApiScope.CUSTOMERS_READ}

    @extend_schema(
        responses=InboxMessageOut(many=True), summary="A customer's in-app messages (unread)"
    )
    def get(self, request: Request, external_id: str) -> Response:
        customer = get_object_or_404(Customer, external_id=external_id)
        messages = inbox_fetch(customer=customer, now=timezone.now())
        return Response(InboxMessageOut(messages, many=True).data)


class InboxActionOut(serializers.Serializer):
    id = serializers.IntegerField(help_text="The message")
    read_at = serializers.DateTimeField(allow_null=True)
    dismissed_at = serializers.DateTimeField(allow_null=True)
    response = serializers.IntegerField(
        allow_null=True, help_text="The logged response (opened or dismissed)"
    )
    replay = serializers.BooleanField(help_text="Already recorded: nothing new was logged")


class _InboxActionApi(APIView):
    action_name = ""
    required_scopes: ClassVar[dict[str, str]] = {"POST": ApiScope.RESPONSES_WRITE}

    def post(self, request: Request, external_id: str, message_id: str) -> Response:
        customer = get_object_or_404(Customer, external_id=external_id)
        if not message_id.isdigit() or len(message_id) > 18:
            raise NotFound(f"Customer '{external_id}' has no in-app message {message_id}.")
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > 150:
            raise serializers.ValidationError({"Idempotency-Key": "at most 150 characters"})
        client = request.user if isinstance(request.user, ApiClient) else None
        try:
            done = inbox_message_act(
                customer=customer,
                message_id=int(message_id),
                action=self.action_name,
                now=timezone.now(),
                idempotency_key=key,
                client=client,
            )
        except InboxMessageNotFoundError as exc:
            raise NotFound(f"Customer '{external_id}' has no in-app message {message_id}.") from exc
        except IdempotencyConflictError as exc:
            raise IdempotencyConflict(exc.errors) from exc
        body = {
            "id": done.message.pk,
            "read_at": done.message.read_at,
            "dismissed_at": done.message.dismissed_at,
            "response": done.response_id,
            "replay": done.replay,
        }
        return Response(
            InboxActionOut(body).data,
            status=status.HTTP_200_OK if done.replay else status.HTTP_201_CREATED,
        )


_IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Optional; the message and action are idempotent without it.",
)


_MESSAGE_ID = OpenApiParameter("message_id", int, OpenApiParameter.PATH)


class InboxReadApi(_InboxActionApi):
    action_name = "read"

    @extend_schema(
        request=None,
        parameters=[_IDEMPOTENCY_HEADER, _MESSAGE_ID],
        responses={200: InboxActionOut, 201: InboxActionOut, 409: None},
        summary="Mark an in-app message read (logs an opened response once)",
    )
    def post(self, request: Request, external_id: str, message_id: str) -> Response:
        return super().post(request, external_id, message_id)


class InboxDismissApi(_InboxActionApi):
    action_name = "dismiss"

    @extend_schema(
        request=None,
        parameters=[_IDEMPOTENCY_HEADER, _MESSAGE_ID],
        responses={200: InboxActionOut, 201: InboxActionOut, 409: None},
        summary="Dismiss an in-app message (logs a dismissed response once)",
    )
    def post(self, request: Request, external_id: str, message_id: str) -> Response:
        return super().post(request, external_id, message_id)


# --- responses, redemptions, provider webhooks, uplift ---------------------------------------


class ResponseIn(serializers.Serializer):
    intervention = serializers.IntegerField(
        required=False, min_value=1, help_text="The intervention id (or campaign + customer)."
    )
    campaign = serializers.IntegerField(required=False, min_value=1, help_text="Campaign id.")
    customer = serializers.CharField(
        required=False, max_length=64, help_text="The customer's external id (with campaign)."
    )
    kind = serializers.ChoiceField(ResponseKind.choices)
    occurred_at = serializers.DateTimeField()
    revenue = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=Decimal("0"), required=False, allow_null=True
    )
    order_external_id = serializers.CharField(required=False, allow_blank=True, max_length=64)
    idempotency_key = serializers.CharField(max_length=200)
    payload = serializers.DictField(required=False)

    def validate_payload(self, value: dict[str, Any]) -> dict[str, Any]:
        if json_has_unstorable_text(value):
            raise serializers.ValidationError(UNSTORABLE_TEXT)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "intervention" not in attrs and not ("campaign" in attrs and attrs.get("customer")):
            raise serializers.ValidationError(
                {"intervention": "give the intervention id, or campaign and customer"}
            )
        return attrs


class ResponseOut(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.IntegerField()
    intervention = serializers.IntegerField()
    kind = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    revenue = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    order_external_id = serializers.CharField()
    idempotency_key = serializers.CharField()
    created_at = serializers.DateTimeField()
    replay = serializers.BooleanField(help_text="True: this key was seen before; the original.")


class ResponsesOut(serializers.Serializer):
    received = serializers.IntegerField()
    created = serializers.IntegerField()
    replayed = serializers.IntegerField()
    results = ResponseOut(many=True)


def _field_errors(index: int, errors: Any) -> list[dict[str, Any]]:
    if isinstance(errors, dict):
        return [
            {"index": index, "field": name, "message": " ".join(str(m) for m in messages)}
            for name, messages in errors.items()
            for messages in [messages if isinstance(messages, list) else [messages]]
        ]
    return [{"index": index, "field": "", "message": str(errors)}]


class IdempotencyConflict(BulkValidationError):
    status_code = status.HTTP_409_CONFLICT
    default_code = "idempotency_conflict"
    default_detail = "An idempotency key was reused with a different body; nothing was written."


class ResponsesApi(APIView):
    """Log responses: one object or a list of up to 1,000 (or {"items": [...]}). Atomic: one
    bad item rejects the request (400, every bad index named) and nothing is written. Keys are
    the calling client's own: an item whose key this client used before returns the original
    response with "replay": true, or a 409 idempotency_conflict if its body differs."""

    required_scopes: ClassVar[dict[str, str]] = {"POST": ApiScope.RESPONSES_WRITE}

    @extend_schema(
        request=ResponseIn(many=True),
        responses={200: ResponsesOut, 201: ResponsesOut, 409: None},
        summary="Log campaign responses (single or bulk, idempotent)",
    )
    def post(self, request: Request) -> Response:
        data = request.data
        if isinstance(data, dict) and "items" in data:
            data = data["items"]
        items = [data] if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise BulkValidationError([], "The body must be an object or a list of objects.")
        if len(items) > settings.API_MAX_BULK_ITEMS:
            raise BulkValidationError(
                [], f"At most {settings.API_MAX_BULK_ITEMS} items per request; got {len(items)}."
            )
        errors: list[dict[str, Any]] = []
        parsed: list[ResponseItem] = []
        # One serializer validates every item, as DRF's ListSerializer does with its child: a
        # serializer per item would deep-copy its fields each time (most of a bulk request's CPU).
        validator: ResponseIn | None = None  # built only when an item needs it
        fast = _PlainItemCheck()
        for index, item in enumerate(items):
            plain = fast.item(item)
            if plain is not None:  # the common shape, checked as the serializer would
                parsed.append(plain)
                continue
            if validator is None:
                validator = ResponseIn()
                known = set(validator.fields)
            if not isinstance(item, dict):
                errors.append({"index": index, "field": "", "message": "expected an object"})
                continue
            errors += [
                {"index": index, "field": name, "message": "unknown field"}
                for name in sorted(set(item) - known)
            ]
            try:
                v = validator.run_validation(item)
            except serializers.ValidationError as exc:
                errors += _field_errors(index, exc.detail)
                continue
            parsed.append(
                ResponseItem(
                    kind=v["kind"],
                    occurred_at=v["occurred_at"],
                    idempotency_key=v["idempotency_key"],
                    intervention_id=v.get("intervention"),
                    campaign_id=v.get("campaign"),
                    customer_external_id=v.get("customer", ""),
                    revenue=v.get("revenue"),
                    order_external_id=v.get("order_external_id", ""),
                    payload=v.get("payload") or {},
                )
            )
        if errors:
            raise BulkValidationError(errors)
        client = request.user if isinstance(request.user, ApiClient) else None
        try:
            results = responses_record_batch(items=parsed, client=client)
        except IdempotencyConflictError as exc:
            raise IdempotencyConflict(exc.errors) from exc
        except ResponseItemsError as exc:
            raise BulkValidationError(exc.errors) from exc
        created = sum(not r.replay for r in results)
        body = {
            "received": len(results),
            "created": created,
            "replayed": len(results) - created,
            "results": _results_representation(results),
        }
        return Response(body, status=status.HTTP_201_CREATED if created else 200)


_PLAIN_FIELDS = frozenset({"intervention", "kind", "occurred_at", "idempotency_key"})
_BIGINT_MAX = 2**63 - 1


class _PlainItemCheck:
    """The common item — exactly intervention (int), kind, occurred_at and idempotency_key —
    checked in a few comparisons instead of the serializer's machinery, with the same outcome:
    an item this accepts is one ResponseIn accepts, turned into the same values (occurred_at is
    parsed by the serializer's own field, once per distinct string). Anything else (another
    field, another type, a value the checks are unsure of) returns None and goes through
    ResponseIn, which also words every error."""

    _fields = ResponseIn().fields  # read once: the same definitions the serializer applies
    kinds = frozenset(cast(serializers.ChoiceField, _fields["kind"]).choices)
    key_max = cast(serializers.CharField, _fields["idempotency_key"]).max_length or 0
    occurred_at = _fields["occurred_at"]

    def __init__(self) -> None:
        self.times: dict[str, Any] = {}

    def when(self, text: str) -> Any:
        if text not in self.times:
            try:
                self.times[text] = self.occurred_at.run_validation(text)
            except serializers.ValidationError:
                self.times[text] = None
        return self.times[text]

    def item(self, item: Any) -> ResponseItem | None:
        if type(item) is not dict or item.keys() != _PLAIN_FIELDS:
            return None
        intervention, kind, key, occurred = (
            item["intervention"],
            item["kind"],
            item["idempotency_key"],
            item["occurred_at"],
        )
        if type(intervention) is not int or not 1 <= intervention <= _BIGINT_MAX:
            return None
        if type(kind) is not str or kind not in self.kinds:
            return None
        if (
            type(key) is not str
            or not 0 < len(key) <= self.key_max
            or key.strip() != key
            or not key.isprintable()
        ):
            return None  # blank, too long, padded, NUL, surrogates, controls: the serializer
        if type(occurred) is not str:
            return None
        when = self.when(occurred)
        if when is None:
            return None
        return ResponseItem(
            kind=kind, occurred_at=when, idempotency_key=key, intervention_id=intervention
        )


_RESULT_FIELDS = ResponseOut().fields


def _results_representation(results: list[ResponseResult]) -> list[dict[str, Any]]:
    """ResponseOut(many=True).data, field for field, without a serializer pass per item: the
    datetimes and amounts are formatted by ResponseOut's own fields, once per distinct value
    (a batch shares its created_at, and usually a few occurred_at)."""
    when_field, revenue_field = _RESULT_FIELDS["occurred_at"], _RESULT_FIELDS["revenue"]
    times: dict[Any, Any] = {}

    def when(value: Any) -> Any:
        if value not in times:
            times[value] = when_field.to_representation(value)
        return times[value]

    out = []
    for index, result in enumerate(results):
        r = result.response
        out.append(
            {
                "index": index,
                "id": r.pk,
                "intervention": r.intervention_id,
                "kind": str(r.kind),
                "occurred_at": when(r.occurred_at),
                "revenue": None
                if r.revenue is None
                else revenue_field.to_representation(r.revenue),
                "order_external_id": str(r.order_external_id),
                "idempotency_key": str(r.idempotency_key),
                "created_at": when(r.created_at),
                "replay": result.replay,
            }
        )
    return out


class RedeemIn(serializers.Serializer):
    order_external_id = serializers.CharField(max_length=64)
    amount = serializers.DecimalField(max_digits=12, decimal_places=2, min_value=Decimal("0"))
    redeemed_at = serializers.DateTimeField(required=False, help_text="Default: now.")


class RedeemOut(serializers.Serializer):
    code = serializers.CharField()
    redeemed_at = serializers.DateTimeField()
    order_external_id = serializers.CharField()
    amount = serializers.DecimalField(max_digits=12, decimal_places=2)
    discount = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField(help_text="ISO 4217 code of amount and discount.")
    response = serializers.IntegerField(allow_null=True)
    replay = serializers.BooleanField()


class CouponRedeemApi(APIView):
    """Redeem a coupon for one order. The same order again returns the original result
    (replay); another order → 409 coupon_already_redeemed; past expiry → 409 coupon_expired;
    an unknown code → 404."""

    required_scopes: ClassVar[dict[str, str]] = {"POST": ApiScope.RESPONSES_WRITE}

    @extend_schema(
        request=RedeemIn,
        responses={200: RedeemOut, 201: RedeemOut, 404: None, 409: None},
        summary="Redeem a coupon (once)",
    )
    def post(self, request: Request, code: str) -> Response:
        data = RedeemIn(data=request.data)
        unknown_fields_refuse(data=request.data, fields=data.fields)
        data.is_valid(raise_exception=True)
        try:
            redemption = coupon_redeem(code=code, **data.validated_data)
        except CouponRedeemError as exc:
            return Response(error_body(exc.code, exc.message), status=exc.status)
        coupon = redemption.coupon
        body = {
            "code": coupon.code,
            "redeemed_at": coupon.redeemed_at,
            "order_external_id": coupon.redeemed_order_external_id,
            "amount": coupon.redeemed_amount,
            "discount": coupon.redeemed_discount,
            "currency": currency(),
            "response": redemption.response.pk if redemption.response else None,
            "replay": redemption.replay,
        }
        return Response(
            RedeemOut(body).data,
            status=status.HTTP_200_OK if redemption.replay else status.HTTP_201_CREATED,
        )


class ProviderEventIn(serializers.Serializer):
    id = serializers.CharField(required=False, max_length=150, help_text="Provider event id.")
    event = serializers.CharField(max_length=40, help_text="delivered, open, bounce, failed…")
    message_id = serializers.CharField(max_length=300)
    occurred_at = serializers.DateTimeField()


class ProviderEventsIn(serializers.Serializer):
    events = ProviderEventIn(many=True)


class ProviderEventsOut(serializers.Serializer):
    received = serializers.IntegerField()
    recorded = serializers.IntegerField()
    replayed = serializers.IntegerField()
    ignored = serializers.IntegerField()
    unknown_message = serializers.IntegerField()


class ProviderWebhookApi(APIView):
    """Delivery events from the email or SMS provider, signed with the channel's shared secret:
    `X-Retention-Timestamp` (Unix seconds) and `X-Retention-Signature: sha256=<hex HMAC-SHA256
    of "<timestamp>.<raw body>">`. Missing headers → 401; a wrong or stale signature → 403."""

    # Signed by the provider instead of an API key; no per-client throttle (no client).
    authentication_classes = ()
    permission_classes = ()
    throttle_classes = ()
    channel: ClassVar[str] = ""

    def secret(self) -> str:
        return str(
            settings.EMAIL_EVENTS_WEBHOOK_SECRET
            if self.channel == "email"
            else settings.SMS_STATUS_WEBHOOK_SECRET
        )

    @extend_schema(request=ProviderEventsIn, responses=ProviderEventsOut, auth=[])
    def post(self, request: Request) -> Response:
        body = request.body  # the raw bytes, read before the parser touches the stream
        timestamp = request.headers.get("X-Retention-Timestamp", "")
        signature = request.headers.get("X-Retention-Signature", "")
        if not timestamp or not signature:
            return Response(
                error_body("not_authenticated", "Missing X-Retention-Signature/Timestamp."),
                status=status.HTTP_401_UNAUTHORIZED,
            )
        if not webhook_signature_valid(
            secret=self.secret(),
            timestamp=timestamp,
            signature=signature,
            body=body,
            now=timezone.now(),
        ):
            return Response(
                error_body("bad_signature", "The signature is invalid or too old."),
                status=status.HTTP_403_FORBIDDEN,
            )
        data = ProviderEventsIn(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            summary = provider_events_record(
                channel=self.channel, events=data.validated_data["events"]
            )
        except ResponseItemsError as exc:
            raise BulkValidationError(exc.errors) from exc
        return Response(ProviderEventsOut(asdict(summary)).data)


class EmailWebhookApi(ProviderWebhookApi):
    channel = "email"


class SmsWebhookApi(ProviderWebhookApi):
    channel = "sms"


class ProportionOut(serializers.Serializer):
    treated_rate = serializers.FloatField()
    control_rate = serializers.FloatField()
    difference = serializers.FloatField()
    ci_low = serializers.FloatField()
    ci_high = serializers.FloatField()
    p_value = serializers.FloatField()
    relative_lift = serializers.FloatField(allow_null=True)
    relative_lift_ci_low = serializers.FloatField(allow_null=True)
    relative_lift_ci_high = serializers.FloatField(allow_null=True)
    test = serializers.CharField()
    method = serializers.CharField()


class MeanOut(serializers.Serializer):
    treated_mean = serializers.FloatField()
    control_mean = serializers.FloatField()
    difference = serializers.FloatField()
    ci_low = serializers.FloatField()
    ci_high = serializers.FloatField()
    p_value = serializers.FloatField()
    method = serializers.CharField()


class ArmOut(serializers.Serializer):
    n = serializers.IntegerField()
    retained = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True)
    converted = serializers.IntegerField()
    conversion_rate = serializers.FloatField(allow_null=True)
    revenue = serializers.FloatField()
    revenue_per_customer = serializers.FloatField(allow_null=True)


class EstimateOut(serializers.Serializer):
    estimate = serializers.FloatField()
    ci_low = serializers.FloatField()
    ci_high = serializers.FloatField()


class CostOut(serializers.Serializer):
    offers = serializers.FloatField()
    messages = serializers.FloatField()
    total = serializers.FloatField()


class GroupOut(serializers.Serializer):
    group = serializers.CharField()
    treatment = ArmOut()
    control = ArmOut()
    retention = ProportionOut(allow_null=True)
    conversion = ProportionOut(allow_null=True)
    revenue = MeanOut(allow_null=True)
    incremental_customers = EstimateOut(allow_null=True)
    incremental_revenue = EstimateOut(allow_null=True)
    cost = CostOut()
    roi = serializers.FloatField(allow_null=True)
    roi_ci_low = serializers.FloatField(allow_null=True)
    roi_ci_high = serializers.FloatField(allow_null=True)
    note = serializers.CharField(allow_null=True)


class CurveOut(serializers.Serializer):
    days = serializers.ListField(child=serializers.IntegerField())
    treatment = serializers.ListField(child=serializers.FloatField())
    control = serializers.ListField(child=serializers.FloatField())


class ReferenceEffectOut(serializers.Serializer):
    """An effect known from outside the measurement, attached to the campaign's cycles and
    shown beside the estimate for comparison."""

    # Serializer fields are collected by the metaclass: this does not shadow Field.label.
    label = serializers.CharField()  # type: ignore[assignment]
    short_label = serializers.CharField()
    retention_effect = serializers.FloatField()
    by_tier = serializers.DictField(child=serializers.FloatField())
    treated_n = serializers.IntegerField()


class UpliftOut(serializers.Serializer):
    campaign = serializers.DictField()
    currency = serializers.CharField(
        help_text="ISO 4217 code of every amount (RETENTION_CURRENCY)."
    )
    cost_basis = serializers.CharField(
        help_text="How `cost` is counted; ROI = (incremental revenue - cost) / cost."
    )
    status = serializers.ChoiceField(["interim", "final", "empty"])
    measured_at = serializers.DateTimeField()
    report_date = serializers.DateField()
    window_closes_at = serializers.DateTimeField(allow_null=True)
    conversion_source = serializers.CharField()
    overall = GroupOut(allow_null=True)
    by_rule = GroupOut(many=True)
    by_tier = GroupOut(many=True)
    by_channel = GroupOut(many=True)
    by_cycle = GroupOut(many=True)
    curve = CurveOut()
    excluded = serializers.DictField(child=serializers.IntegerField())
    reference_effect = ReferenceEffectOut(allow_null=True)


class CampaignUpliftApi(APIView):
    """The campaign's uplift figures — the same as the admin report: today's snapshot, computed
    now if there is none yet (`?refresh=1` recomputes it)."""

    required_scopes: ClassVar[dict[str, str]] = {"GET": ApiScope.REPORTS_READ}

    @extend_schema(
        responses=UpliftOut,
        summary="A campaign's uplift report",
        parameters=[
            OpenApiParameter(
                "campaign",
                str,
                OpenApiParameter.PATH,
                description="The campaign's key (e.g. win-back) or its numeric id.",
            )
        ],
    )
    def get(self, request: Request, campaign: str) -> Response:
        found = selectors.campaign_by_key_or_id(campaign)
        if found is None:
            raise NotFound(f"No campaign has the key or id {campaign!r}.")
        report = uplift_report_latest(campaign=found)
        now = timezone.now()
        if report is None or report.report_date != now.date() or request.GET.get("refresh"):
            report = uplift_report_compute(campaign=found, now=now)
        figures = CampaignUpliftReport.from_json(report.figures)
        return Response(
            {
                **figures.to_json(),
                "report_date": report.report_date,
                "currency": currency(),
                "cost_basis": COST_BASIS,
            }
        )
