"""The scoring app's part of a customer's data export (customers.privacy): every score kept,
with its reasons and how its score adds up (attributions). Scores hold nothing personal beyond
the link, so erasure leaves them."""

from __future__ import annotations

from typing import Any

from customers.models import Customer
from customers.privacy import PersonalDataSection, personal_data_register
from scoring.models import CustomerScore


def customer_scores_export(customer: Customer) -> list[dict[str, Any]]:
    rows = (
        CustomerScore.objects.filter(customer=customer)
        .order_by("scored_at", "id")
        .values(
            "scored_at", "probability", "tier", "reasons", "attributions", "run__model__version"
        )
    )
    renamed = {"run__model__version": "model_version"}
    return [{renamed.get(k, k): v for k, v in row.items()} for row in rows]


def register() -> None:
    personal_data_register(PersonalDataSection("scores", customer_scores_export))
