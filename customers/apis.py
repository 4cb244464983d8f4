"""Ingestion API: bulk upserts of customers, orders and events; consent; customer reads."""

from __future__ import annotations

import base64
import binascii
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any, ClassVar

import pandas as pd
from django.conf import settings
from django.db import transaction
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from common.api import BulkValidationError, unknown_fields_refuse
from common.db.bulk import UpsertCounts
from customers import selectors, services, services_lines
from customers.models import (
    ApiClient,
    ApiScope,
    Channel,
    ConsentStatus,
    Customer,
    Device,
    DevicePlatform,
)
from customers.privacy import customer_export, customer_for_privacy_request
from customers.validation import SPECS, validate_records

# --- request/response shapes (they document the API; validation is customers.validation) ---


class CustomerIn(serializers.Serializer):
    external_id = serializers.CharField(max_length=64)
    name = serializers.CharField(required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    phone = serializers.CharField(required=False, allow_blank=True)
    time_zone = serializers.CharField(required=False, help_text="IANA name, e.g. Europe/Paris")
    country = serializers.CharField(required=False, allow_blank=True)
    signup_date = serializers.DateField(required=False, allow_null=True)
    attributes = serializers.DictField(required=False, help_text="Merged key by key")


class OrderLineIn(serializers.Serializer):
    product = serializers.CharField(max_length=64, help_text="The product's external id")
    product_name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    quantity = serializers.IntegerField(min_value=1)
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=3, min_value=0)


class OrderIn(serializers.Serializer):
    external_id = serializers.CharField(max_length=64)
    customer = serializers.CharField(help_text="The customer's external id")
    placed_at = serializers.DateTimeField()
    amount = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=0,
        required=False,
        help_text="Required without lines; with lines it is their total",
    )
    lines = OrderLineIn(
        many=True,
        required=False,
        help_text="The order's lines; they replace its stored lines and set its amount and "
        "item count",
    )
    currency = serializers.CharField(required=False, max_length=3)
    status = serializers.ChoiceField(["completed", "refunded", "cancelled"], required=False)
    item_count = serializers.IntegerField(required=False, min_value=0)
    discount_amount = serializers.DecimalField(
        max_digits=12, decimal_places=2, min_value=0, required=False
    )
    category = serializers.CharField(required=False, allow_blank=True)


class EventIn(serializers.Serializer):
    external_id = serializers.CharField(max_length=64)
    customer = serializers.CharField(help_text="The customer's external id")
    kind = serializers.CharField(help_text="visit, support_ticket, complaint, cart_abandoned…")
    occurred_at = serializers.DateTimeField()
    properties = serializers.DictField(required=False)


class UpsertResultOut(serializers.Serializer):
    received = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()


class ConsentIn(serializers.Serializer):
    channel = serializers.ChoiceField(Channel.choices)
    status = serializers.ChoiceField(ConsentStatus.choices)
    recorded_at = serializers.DateTimeField(required=False)
    source = serializers.CharField(required=False, default="api", max_length=64)  # type: ignore[assignment]

    def validate_recorded_at(self, value: datetime) -> datetime:
        skew = timedelta(seconds=settings.CONSENT_CLOCK_SKEW_SECONDS)
        if value > timezone.now() + skew:
            raise serializers.ValidationError(
                "must not be in the future (a statement is recorded when it is made)"
            )
        return value


class ConsentStateOut(serializers.Serializer):
    granted = serializers.BooleanField()
    source = serializers.CharField()  # type: ignore[assignment]
    recorded_at = serializers.DateTimeField(allow_null=True)


class CustomerOut(serializers.ModelSerializer):
    consent = serializers.SerializerMethodField()

    class Meta:
        model = Customer
        fields = [
            "external_id",
            "name",
            "email",
            "phone",
            "time_zone",
            "country",
            "signup_date",
            "attributes",
            "erased",
            "churn_probability",
            "risk_tier",
            "scored_at",
            "created_at",
            "updated_at",
            "consent",
        ]

    def get_consent(self, customer: Customer) -> dict[str, Any]:
        state = selectors.customer_consent_state(customer=customer)
        return {k: ConsentStateOut(v).data for k, v in state.items()}


# --- views ---


class BulkUpsertApi(APIView):
    """POST a JSON list of up to 1,000 items; all are written or none."""

    kind: ClassVar[str] = ""
    required_scopes: ClassVar[dict[str, str]] = {"POST": ApiScope.CUSTOMERS_WRITE}

    def post(self, request: Request) -> Response:
        items = request.data
        if isinstance(items, dict) and "items" in items:
            items = items["items"]
        if not isinstance(items, list):
            raise BulkValidationError([], "The body must be a JSON list of items.")
        if not items:  # valid by the schema: nothing to write
            return Response({"received": 0, **asdict(UpsertCounts())}, status=status.HTTP_200_OK)
        limit = settings.API_MAX_BULK_ITEMS
        if len(items) > limit:
            raise BulkValidationError([], f"At most {limit} items per request; got {len(items)}.")
        not_objects = [i for i, item in enumerate(items) if not isinstance(item, dict)]
        if not_objects:
            raise BulkValidationError(
                [{"index": i, "field": "", "message": "expected an object"} for i in not_objects]
            )
        counts = self.write(items)
        return Response({"received": len(items), **asdict(counts)}, status=status.HTTP_200_OK)

    def write(self, items: list[dict[str, Any]]) -> Any:
        spec = SPECS[self.kind]
        known = {f.name for f in spec.fields}
        errors: list[dict[str, Any]] = []
        json_fields = {f.name for f in spec.fields if f.type == "json"}
        for index, item in enumerate(items):
            for name, value in item.items():
                if name not in known:
                    errors.append({"index": index, "field": name, "message": "unknown field"})
                elif name not in json_fields and isinstance(value, list | dict):
                    message = "expected a single value, not a list or an object"
                    errors.append({"index": index, "field": name, "message": message})
        if "external_id" in known:
            for index, item in enumerate(items):
                if not str(item.get("external_id") or "").strip():
                    errors.append(
                        {"index": index, "field": "external_id", "message": "is required"}
                    )
        frame = pd.DataFrame.from_records(items, columns=[f.name for f in spec.fields])
        result = validate_records(frame, spec, date_format="ISO8601", require_time=True)
        errors += [
            {"index": int(row.position), "field": row.field, "message": row.reason}
            for row in result.errors.itertuples()
        ]
        records = result.valid.drop(index=[e["index"] for e in errors], errors="ignore")
        duplicated = records["external_id"].duplicated(keep=False)
        errors += [
            {"index": int(i), "field": "external_id", "message": "appears twice in this request"}
            for i in records.index[duplicated.to_numpy()]
        ]
        if errors:
            raise BulkValidationError(sorted(errors, key=lambda e: e["index"]))
        with transaction.atomic():
            if "customer" in records.columns:
                link = services.records_link_customers(records=records, create_missing=False)
                if len(link.unknown):
                    raise BulkValidationError(
                        [
                            {
                                "index": int(i),
                                "field": "customer",
                                "message": f"unknown customer '{records.at[i, 'customer']}'",
                            }
                            for i in link.unknown
                        ]
                    )
                records = link.linked
            # Only the fields an item sends are written: items are upserted in groups by the
            # set of fields they carry, so omitting a field never blanks it.
            counts = UpsertCounts()
            field_sets = pd.Series([tuple(sorted(item)) for item in items])
            for fields, positions in field_sets.groupby(field_sets).groups.items():
                columns = ["customer_id" if f == "customer" else f for f in fields]
                counts += self.upsert(records.loc[list(positions), columns])
            return counts

    def upsert(self, records: pd.DataFrame) -> Any:
        raise NotImplementedError


class CustomersBulkApi(BulkUpsertApi):
    kind = "customers"

    @extend_schema(request=CustomerIn(many=True), responses=UpsertResultOut)
    def post(self, request: Request) -> Response:
        return super().post(request)

    def upsert(self, records: pd.DataFrame) -> Any:
        return services.customers_upsert(records=records)


class OrdersBulkApi(BulkUpsertApi):
    kind = "orders"

    @extend_schema(request=OrderIn(many=True), responses=UpsertResultOut)
    def post(self, request: Request) -> Response:
        return super().post(request)

    def upsert(self, records: pd.DataFrame) -> Any:
        return services.orders_upsert(records=records)

    def write(self, items: list[dict[str, Any]]) -> Any:
        """Orders as usual; the `lines` of an item (checked first) replace its order's lines,
        whose totals become the order's amount and item count."""
        given = {i: item.pop("lines") for i, item in enumerate(items) if "lines" in item}
        lines = order_lines_frame(given, items)
        # The order row gets the lines' totals at once, so posting it again rewrites nothing.
        totals = lines.assign(value=lines["quantity"] * lines["unit_price"]).groupby("order")
        for index in given:
            key = str(items[index].get("external_id", ""))
            if key in totals.groups:
                items[index]["amount"] = round(float(totals["value"].sum()[key]), 2)
                items[index]["item_count"] = int(totals["quantity"].sum()[key])
        with transaction.atomic():
            counts = super().write(items)
            if not lines.empty:
                services_lines.order_lines_set(lines=lines)
        return counts


def order_lines_frame(given: dict[int, Any], items: list[dict[str, Any]]) -> pd.DataFrame:
    """The lines of the items as one frame (order, line_no, product, product_name, quantity,
    unit_price); a bad line raises BulkValidationError naming the item and the line."""
    errors: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for index, lines in given.items():
        if not isinstance(lines, list) or not lines:
            errors.append({"index": index, "field": "lines", "message": "expected a list of lines"})
            continue
        for number, line in enumerate(lines, start=1):
            field = f"lines[{number - 1}]"
            checked = OrderLineIn(data=line) if isinstance(line, dict) else None
            if checked is None or not checked.is_valid():
                problems = checked.errors if checked is not None else {"": ["expected an object"]}
                errors += [
                    {"index": index, "field": f"{field}.{name}".rstrip("."), "message": str(m[0])}
                    for name, m in problems.items()
                ]
                continue
            data = checked.validated_data
            rows.append(
                {
                    "order": str(items[index].get("external_id", "")),
                    "line_no": number,
                    "product": data["product"],
                    "product_name": data.get("product_name", ""),
                    "quantity": data["quantity"],
                    "unit_price": float(data["unit_price"]),
                }
            )
    if errors:
        raise BulkValidationError(errors)
    return pd.DataFrame(
        rows, columns=["order", "line_no", "product", "product_name", "quantity", "unit_price"]
    )


class EventsBulkApi(BulkUpsertApi):
    kind = "events"

    @extend_schema(request=EventIn(many=True), responses=UpsertResultOut)
    def post(self, request: Request) -> Response:
        return super().post(request)

    def upsert(self, records: pd.DataFrame) -> Any:
        return services.events_upsert(records=records)


class CustomerDetailApi(APIView):
    required_scopes: ClassVar[dict[str, str]] = {"GET": ApiScope.CUSTOMERS_READ}

    @extend_schema(responses=CustomerOut)
    def get(self, request: Request, external_id: str) -> Response:
        customer = get_object_or_404(Customer, external_id=external_id)
        return Response(CustomerOut(customer).data)


class CustomerConsentApi(APIView):
    required_scopes: ClassVar[dict[str, str]] = {"PUT": ApiScope.CUSTOMERS_WRITE}

    @extend_schema(request=ConsentIn, responses={200: ConsentStateOut})
    def put(self, request: Request, external_id: str) -> Response:
        customer = get_object_or_404(Customer, external_id=external_id)
        data = ConsentIn(data=request.data)
        unknown_fields_refuse(data=request.data, fields=data.fields)
        data.is_valid(raise_exception=True)
        services.consent_set(customer=customer, **data.validated_data)
        state = selectors.customer_consent_state(customer=customer)[data.validated_data["channel"]]
        return Response(ConsentStateOut(state).data)


# --- personal data: erasure and export (customers.privacy; docs/privacy.md) ---


class ErasureOut(serializers.Serializer):
    external_id = serializers.CharField(help_text="The id the request named")
    pseudonym = serializers.CharField(help_text="The customer's external id from now on")
    already_erased = serializers.BooleanField(help_text="An earlier request had erased it all")
    erased_fields = serializers.ListField(child=serializers.CharField())
    consents_revoked = serializers.IntegerField(help_text="Channels not revoked before")
    events_cleared = serializers.IntegerField(help_text="Events whose properties were emptied")
    cleared = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Rows whose personal text was blanked or renamed, per kind (interventions, "
        "responses, callbacks, admin_history), and push devices deleted (devices)",
    )
    kept = serializers.ListField(child=serializers.CharField())


class ExportOut(serializers.Serializer):
    format = serializers.IntegerField(help_text="The document's version")
    profile = serializers.DictField()
    attributes = serializers.DictField()
    consents = serializers.ListField(child=serializers.DictField())
    orders = serializers.ListField(child=serializers.DictField())
    events = serializers.ListField(child=serializers.DictField())
    devices = serializers.ListField(child=serializers.DictField(), help_text="Push devices")
    scores = serializers.ListField(child=serializers.DictField(), help_text="With reasons")
    interventions = serializers.ListField(child=serializers.DictField(), help_text="With coupon")
    responses = serializers.ListField(child=serializers.DictField())
    callbacks = serializers.ListField(child=serializers.DictField())


def _privacy_request_customer(external_id: str) -> Customer:
    customer = customer_for_privacy_request(external_id=external_id)
    if customer is None:
        raise NotFound(f"No customer with external id '{external_id}'.")
    return customer


class CustomerEraseApi(APIView):
    """Erase one customer's personal data; repeating the request is harmless (idempotent)."""

    required_scopes: ClassVar[dict[str, str]] = {"POST": ApiScope.CUSTOMERS_ERASE}

    @extend_schema(
        request=None,
        responses={200: ErasureOut},  # the error responses: common.openapi
        summary="Erase a customer's personal data (keeps what uplift reports need)",
    )
    def post(self, request: Request, external_id: str) -> Response:
        customer = _privacy_request_customer(external_id)
        client = request.user if isinstance(request.user, ApiClient) else None
        requested_by = f"API client '{client.name}'" if client else "API"
        erasure = services.customer_erase(
            customer=customer, requested_by=requested_by, api_client=client
        )
        body = {
            "external_id": external_id,
            "pseudonym": erasure.customer.external_id,
            "already_erased": erasure.already_erased,
            "erased_fields": [*services.ERASED_FIELDS, "event properties"],
            "consents_revoked": erasure.consents_revoked,
            "events_cleared": erasure.events_cleared,
            "cleared": erasure.cleared,
            "kept": ["orders", "events (kind and time)", "scores", "interventions", "responses"],
        }
        return Response(ErasureOut(body).data)


class CustomerExportApi(APIView):
    """Everything held about one customer, as one JSON document."""

    required_scopes: ClassVar[dict[str, str]] = {"GET": ApiScope.CUSTOMERS_EXPORT}

    @extend_schema(
        responses={200: ExportOut},  # the error responses: common.openapi
        summary="Export everything held about a customer (JSON)",
    )
    def get(self, request: Request, external_id: str) -> Response:
        return Response(customer_export(customer=_privacy_request_customer(external_id)))


# --- devices: where push notifications go (docs/channels.md) ---


def _b64url_bytes(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise serializers.ValidationError("is not base64url") from exc


class SubscriptionKeysIn(serializers.Serializer):
    p256dh = serializers.CharField(max_length=200, help_text="base64url P-256 public key")
    auth = serializers.CharField(max_length=64, help_text="base64url 16-byte auth secret")

    def validate_p256dh(self, value: str) -> str:
        raw = _b64url_bytes(value)
        if len(raw) != 65 or raw[0] != 4:
            raise serializers.ValidationError(
                "must be the subscription's uncompressed P-256 public key (65 bytes, base64url)"
            )
        return value

    def validate_auth(self, value: str) -> str:
        if len(_b64url_bytes(value)) != 16:
            raise serializers.ValidationError("must be the 16-byte auth secret, base64url")
        return value


class SubscriptionIn(serializers.Serializer):
    """The browser's PushSubscription as `subscription.toJSON()` gives it."""

    endpoint = serializers.URLField(max_length=2000, help_text="The push service URL (https)")
    expirationTime = serializers.IntegerField(
        required=False, allow_null=True, help_text="Ignored (as the browser sends it)"
    )
    keys = SubscriptionKeysIn()

    def validate_endpoint(self, value: str) -> str:
        if not value.startswith("https://") and not settings.DEBUG and not settings.PUSH_ALLOW_HTTP:
            raise serializers.ValidationError("must be an https:// URL")
        return value


class DeviceIn(serializers.Serializer):
    platform = serializers.ChoiceField(DevicePlatform.choices)
    token = serializers.CharField(
        required=False, max_length=2000, help_text="android, ios: the FCM registration token"
    )
    subscription = SubscriptionIn(required=False, help_text="web: the PushSubscription")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs["platform"] == DevicePlatform.WEB:
            if "subscription" not in attrs:
                raise serializers.ValidationError(
                    {"subscription": "a web device needs its PushSubscription (endpoint, keys)"}
                )
            if "token" in attrs:
                raise serializers.ValidationError(
                    {"token": "a web device is identified by its subscription's endpoint"}
                )
        elif "token" not in attrs:
            raise serializers.ValidationError(
                {"token": f"an {attrs['platform']} device needs its FCM registration token"}
            )
        elif "subscription" in attrs:
            raise serializers.ValidationError({"subscription": "only web devices have one"})
        return attrs


class DeviceOut(serializers.ModelSerializer):
    class Meta:
        model = Device
        fields = [
            "id",
            "platform",
            "status",
            "unregistered_reason",
            "unregistered_at",
            "created_at",
            "last_seen_at",
        ]


class DeviceRegisteredOut(DeviceOut):
    retired = serializers.IntegerField(
        help_text="How many of the customer's oldest devices were retired to stay within "
        "PUSH_MAX_DEVICES_PER_CUSTOMER"
    )

    class Meta(DeviceOut.Meta):
        fields = [*DeviceOut.Meta.fields, "retired"]


class CustomerDevicesApi(APIView):
    """Register a device for push notifications, or refresh it: the same token (or Web Push
    endpoint) again updates the existing device (200) instead of adding one (201)."""

    required_scopes: ClassVar[dict[str, str]] = {"POST": ApiScope.CUSTOMERS_WRITE}

    @extend_schema(
        request=DeviceIn,
        responses={200: DeviceRegisteredOut, 201: DeviceRegisteredOut},
        summary="Register or refresh a push device (idempotent by token)",
    )
    def post(self, request: Request, external_id: str) -> Response:
        customer = get_object_or_404(Customer, external_id=external_id)
        data = DeviceIn(data=request.data)
        unknown_fields_refuse(data=request.data, fields=data.fields)
        if isinstance(request.data, dict) and isinstance(request.data.get("subscription"), dict):
            unknown_fields_refuse(data=request.data["subscription"], fields=SubscriptionIn().fields)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        subscription = values.get("subscription")
        registration = services.device_register(
            customer=customer,
            platform=values["platform"],
            token=subscription["endpoint"] if subscription else values["token"],
            p256dh=subscription["keys"]["p256dh"] if subscription else "",
            auth=subscription["keys"]["auth"] if subscription else "",
        )
        body = {**DeviceOut(registration.device).data, "retired": registration.retired}
        return Response(
            body, status=status.HTTP_201_CREATED if registration.created else status.HTTP_200_OK
        )


class CustomerDeviceDetailApi(APIView):
    required_scopes: ClassVar[dict[str, str]] = {"DELETE": ApiScope.CUSTOMERS_WRITE}

    @extend_schema(
        parameters=[OpenApiParameter("device_id", int, OpenApiParameter.PATH)],
        responses={204: None},
        summary="Remove a push device (the app signed out)",
    )
    def delete(self, request: Request, external_id: str, device_id: str) -> Response:
        customer = get_object_or_404(Customer, external_id=external_id)
        number = int(device_id) if device_id.isdigit() and len(device_id) < 19 else 0
        if not number or not services.device_delete(customer=customer, device_id=number):
            raise NotFound(f"Customer '{external_id}' has no device {device_id}.")
        return Response(status=status.HTTP_204_NO_CONTENT)
