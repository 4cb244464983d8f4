"""TextJSONField: PostgreSQL's `json` under a JSONField — the same values and lookups."""

from __future__ import annotations

import pandas as pd
import pytest
from django.db import connection, transaction

from common.db.bulk import bulk_insert
from customers.models import Customer
from scoring.models import ChurnModel, CustomerScore, ScoringRun

pytestmark = pytest.mark.django_db

VALUES = [
    [],
    ["no orders in the last 90 days", "plan is “gold” ✓"],
    {"b": 0.5, "m": "l", "i": [0, 0.25, "channel is app", -0.01], "r": 0.0},
    {},
    ["a text that reads like a number", "5"],
]


def _run() -> ScoringRun:
    model = ChurnModel.objects.create(version="m1", artifact_path="x", threshold=0.5)
    return ScoringRun.objects.create(run_key="r", model=model, as_of="2024-06-01T00:00Z")


def test_reasons_and_waterfalls_round_trip_through_orm_copy_and_lookups() -> None:
    run = _run()
    customers = Customer.objects.bulk_create(Customer(external_id=f"c{i}") for i in range(6))
    for customer, value in zip(customers, VALUES, strict=False):
        CustomerScore.objects.create(
            run=run,
            customer=customer,
            tier="low",
            reasons=value,
            attributions=value,
            scored_at="2024-06-01T00:00Z",
        )
    # COPY with the JSON already as text (how a scoring chunk writes them)
    copied = pd.DataFrame(
        {
            "run_id": [run.pk],
            "customer_id": [customers[5].pk],
            "tier": ["high"],
            "reasons": ['["read by COPY"]'],
            "attributions": ['{"b": 0.1}'],
            "scored_at": [pd.Timestamp("2024-06-01", tz="UTC")],
        }
    )
    with transaction.atomic():
        assert bulk_insert(CustomerScore, copied, json_text=("reasons", "attributions")) == 1
    stored = dict(CustomerScore.objects.values_list("customer_id", "reasons"))
    assert [stored[c.pk] for c in customers] == [*VALUES, ["read by COPY"]]
    waterfalls = CustomerScore.objects.order_by("customer_id")
    assert [s.attributions for s in waterfalls] == [*VALUES, {"b": 0.1}]
    # exact lookups compare values, as a JSONField's do
    assert CustomerScore.objects.filter(attributions={}).count() == 1
    assert CustomerScore.objects.exclude(reasons=[]).count() == 5
    assert CustomerScore.objects.filter(reasons=VALUES[4]).get().customer_id == customers[4].pk


def test_on_postgres_the_columns_are_json_and_refuse_what_is_not_json(
    require_postgres: None,
) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attname IN ('reasons', 'attributions') "
            "ORDER BY attname",
            [CustomerScore._meta.db_table],
        )
        assert cursor.fetchall() == [("attributions", "json"), ("reasons", "json")]
    run = _run()
    customer = Customer.objects.create(external_id="c")
    bad = pd.DataFrame(
        {
            "run_id": [run.pk],
            "customer_id": [customer.pk],
            "tier": ["low"],
            "reasons": ["[not json"],
            "scored_at": [pd.Timestamp("2024-06-01", tz="UTC")],
        }
    )
    import psycopg

    with (
        pytest.raises(psycopg.errors.InvalidTextRepresentation, match="type json"),
        transaction.atomic(),
    ):
        bulk_insert(CustomerScore, bad, json_text=("reasons",))
