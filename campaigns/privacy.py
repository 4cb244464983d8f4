"""The campaigns app's part of a customer's data export and erasure (customers.privacy).

Registered in CampaignsConfig.ready(): customers cannot import this floor, so it asks."""

from __future__ import annotations

from typing import Any

from campaigns.models import CallbackTask, Intervention, Response
from campaigns.services.privacy import (
    customer_callbacks_notes_erase,
    customer_interventions_detail_erase,
    customer_responses_payload_erase,
)
from customers.models import Customer
from customers.privacy import PersonalDataSection, personal_data_register


def customer_interventions_export(customer: Customer) -> list[dict[str, Any]]:
    """Every campaign decision about the customer, with its coupon, oldest first."""
    rows = (
        Intervention.objects.filter(customer=customer)
        .order_by("created_at", "id")
        .values(
            "id",
            "campaign__name",
            "cycle__cycle_key",
            "rule__name",
            "arm",
            "channel",
            "status",
            "reason",
            "detail",
            "churn_probability",
            "risk_tier",
            "model_version",
            "created_at",
            "sent_at",
            "delivered_at",
            "coupon__code",
            "coupon__value",
            "coupon__expires_at",
            "coupon__redeemed_at",
            "coupon__redeemed_order_external_id",
        )
    )
    renamed = {"campaign__name": "campaign", "cycle__cycle_key": "cycle", "rule__name": "rule"}
    out = []
    for row in rows:
        item: dict[str, Any] = {renamed.get(k, k): v for k, v in row.items() if "coupon__" not in k}
        coupon = {k.removeprefix("coupon__"): v for k, v in row.items() if "coupon__" in k}
        item["coupon"] = coupon if coupon["code"] is not None else None
        out.append(item)
    return out


def customer_responses_export(customer: Customer) -> list[dict[str, Any]]:
    rows = (
        Response.objects.filter(intervention__customer=customer)
        .order_by("occurred_at", "id")
        .values(
            "intervention_id",
            "kind",
            "occurred_at",
            "revenue",
            "order_external_id",
            "payload",
            "created_at",
        )
    )
    return [dict(row) for row in rows]


def customer_callbacks_export(customer: Customer) -> list[dict[str, Any]]:
    rows = (
        CallbackTask.objects.filter(customer=customer)
        .order_by("due_at", "id")
        .values("intervention_id", "due_at", "status", "outcome", "notes", "completed_at")
    )
    return [dict(row) for row in rows]


def register() -> None:
    for section in (
        PersonalDataSection(
            "interventions", customer_interventions_export, customer_interventions_detail_erase
        ),
        PersonalDataSection(
            "responses", customer_responses_export, customer_responses_payload_erase
        ),
        PersonalDataSection("callbacks", customer_callbacks_export, customer_callbacks_notes_erase),
    ):
        personal_data_register(section)
