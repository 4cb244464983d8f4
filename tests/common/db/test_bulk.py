"""Bulk writes: the database counts what it created, updated and left alone, merges JSON
attributes key by key, and skips rows that conflict with a multi-column unique constraint."""

from __future__ import annotations

import pandas as pd
import pytest

from common.db.bulk import UpsertCounts, bulk_insert_ignore, bulk_upsert, ids_for_keys
from customers.models import Consent, Customer

pytestmark = pytest.mark.django_db


def _customers(**columns: list[object]) -> pd.DataFrame:
    return pd.DataFrame(columns)


def test_upsert_counts_created_updated_and_unchanged_rows() -> None:
    first = bulk_upsert(Customer, _customers(external_id=["a", "b"], name=["Ann", "Bob"]))
    assert first == UpsertCounts(created=2, updated=0, unchanged=0)
    again = bulk_upsert(
        Customer, _customers(external_id=["a", "b", "c"], name=["Ann", "Robert", "Cy"])
    )
    assert again == UpsertCounts(created=1, updated=1, unchanged=1)
    assert Customer.objects.get(external_id="b").name == "Robert"


def test_upsert_never_blanks_a_column_the_batch_lacks() -> None:
    bulk_upsert(Customer, _customers(external_id=["a"], name=["Ann"], country=["FR"]))
    bulk_upsert(Customer, _customers(external_id=["a"], name=["Anne"]))
    customer = Customer.objects.get(external_id="a")
    assert (customer.name, customer.country) == ("Anne", "FR")


def test_upsert_merges_json_attributes_key_by_key() -> None:
    merge = {"json_merge": ["attributes"]}
    bulk_upsert(Customer, _customers(external_id=["a"], attributes=[{"plan": "gold"}]), **merge)
    bulk_upsert(Customer, _customers(external_id=["a"], attributes=[{"seats": 3}]), **merge)
    assert Customer.objects.get(external_id="a").attributes == {"plan": "gold", "seats": 3}


def test_upsert_refuses_a_batch_with_a_repeated_key() -> None:
    with pytest.raises(ValueError, match="duplicate external_id"):
        bulk_upsert(Customer, _customers(external_id=["a", "a"]))
    assert not Customer.objects.exists()


def test_insert_ignore_skips_conflicts_and_returns_only_new_rows() -> None:
    bulk_upsert(Customer, _customers(external_id=["a", "b"]))
    ids = dict(Customer.objects.values_list("external_id", "pk"))
    stamp = pd.Timestamp("2024-01-01", tz="UTC")

    def consents(*pairs: tuple[str, str]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "customer_id": [ids[c] for c, _ in pairs],
                "channel": [ch for _, ch in pairs],
                "status": "granted",
                "recorded_at": stamp,
                "source": "test",
                "updated_at": stamp,
            }
        )

    first = bulk_insert_ignore(Consent, consents(("a", "email")), returning=("customer_id",))
    assert first == [(ids["a"],)]
    second = bulk_insert_ignore(
        Consent, consents(("a", "email"), ("b", "email"), ("a", "sms")), returning=("channel",)
    )
    assert sorted(second) == [("email",), ("sms",)]
    assert Consent.objects.count() == 3


def test_ids_for_keys_maps_known_keys_and_leaves_the_rest_missing() -> None:
    bulk_upsert(Customer, _customers(external_id=["a", "b"]))
    ids = ids_for_keys(Customer, pd.Series(["b", "zz", None, "a"]))
    expected = dict(Customer.objects.values_list("external_id", "pk"))
    assert ids.iloc[0] == expected["b"] and ids.iloc[3] == expected["a"]
    assert ids.iloc[1:3].isna().all()


def test_tables_analyze_runs_on_postgres_after_a_big_write_and_not_after_a_small_one(
    require_postgres: None,
) -> None:
    """A nightly run's 1M new scores left the planner estimating a lookup 3,000 times too
    costly (docs/scaling.md, "The relay at volume"): a big write refreshes the statistics."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from common.db.bulk import ANALYZE_MIN_ROWS, tables_analyze

    with CaptureQueriesContext(connection) as small:
        tables_analyze(Customer, Consent, grew_by=ANALYZE_MIN_ROWS - 1)
    with CaptureQueriesContext(connection) as big:
        tables_analyze(Customer, Consent, grew_by=ANALYZE_MIN_ROWS)
    assert not small.captured_queries
    assert [q["sql"] for q in big.captured_queries] == [
        'ANALYZE "customers_customer", "customers_consent"'
    ]
