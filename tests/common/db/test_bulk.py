"""Bulk writes: the database counts what it created, updated and left alone, merges JSON
attributes key by key, and skips rows that conflict with a multi-column unique constraint."""

from __future__ import annotations

import numpy as np
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


def test_tables_analyze_refreshes_only_the_columns_named_and_every_tables_row_count(
    require_postgres: None,
) -> None:
    """A scoring run's finish names the columns it wrote (the JSON ones are the dearest to
    sample and nothing looks inside them); PostgreSQL then refreshes those columns' statistics
    and the table's row estimate, and leaves the other columns' alone."""
    from django.db import connection

    from common.db.bulk import bulk_insert, tables_analyze

    frame = pd.DataFrame(
        {
            "external_id": [f"a{i}" for i in range(200)],
            "name": "n",
            "risk_tier": ["high", "low"] * 100,
            "attributes": ['{"plan": "gold"}'] * 200,
        }
    )
    bulk_insert(Customer, frame, json_text=("attributes",))
    tables_analyze(Customer, columns={Customer: ("risk_tier",)})
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT attname FROM pg_stats WHERE tablename = %s ORDER BY attname",
            [Customer._meta.db_table],
        )
        analysed = [name for (name,) in cursor.fetchall()]
        cursor.execute(
            "SELECT reltuples FROM pg_class WHERE relname = %s", [Customer._meta.db_table]
        )
        (rows,) = cursor.fetchone()
    assert analysed == ["risk_tier"] and rows == 200


def test_tables_analyze_samples_at_the_target_asked_for_this_once(require_postgres: None) -> None:
    """A run's finish asks for a small sample (a quick refresh, refined by autovacuum later):
    the histogram has that many buckets, and the session's setting is left as it was."""
    from django.db import connection

    from common.db.bulk import bulk_insert, tables_analyze

    frame = pd.DataFrame(
        {
            "external_id": [f"p{i}" for i in range(400)],
            "churn_probability": np.linspace(0.0, 1.0, 400),
        }
    )
    bulk_insert(Customer, frame)

    def buckets() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT array_length(histogram_bounds::text::float8[], 1) FROM pg_stats "
                "WHERE tablename = %s AND attname = 'churn_probability'",
                [Customer._meta.db_table],
            )
            return int(cursor.fetchone()[0]) - 1

    def target() -> str:
        with connection.cursor() as cursor:
            cursor.execute("SHOW default_statistics_target")
            return str(cursor.fetchone()[0])

    before = target()
    tables_analyze(Customer, columns={Customer: ("churn_probability",)}, statistics_target=10)
    assert buckets() == 10 and target() == before
    tables_analyze(Customer, columns={Customer: ("churn_probability",)})
    assert buckets() == min(int(before), 399)


def test_insert_keeps_awkward_values_exactly() -> None:
    """What COPY's text format must escape or mark (tab, line breaks, backslashes, a literal
    \\N, non-ASCII) comes back as written; a missing value is NULL in a nullable column and ''
    in a text one; floats keep every digit; booleans, small integers, dates and times too."""
    from common.db.bulk import bulk_insert

    awkward = ["tab\there", "two\nlines\r\n", "back\\slash \\N", "\\N", "émile 😀", ""]
    frame = pd.DataFrame(
        {
            "external_id": [f"k{i}" for i in range(len(awkward))],
            "name": awkward,
            "attributes": [{"note": text} for text in awkward],
            "erased": [True, False, True, False, True, False],
            "churn_probability": [0.1 + 0.2, float("nan"), 1e-300, 0.0, 1.0, 2 / 3],
            "score_student_leaf": pd.array([3, None, 0, None, 7, 1], dtype="Int16"),
            "signup_date": pd.to_datetime(
                ["2024-02-29", None, "1999-12-31", None, "2024-01-01", None]
            ),
            "scored_at": pd.to_datetime(
                ["2024-01-02 03:04:05.123456", None, "2024-01-01", None, None, None],
                utc=True,
                format="ISO8601",
            ),
        }
    )
    assert bulk_insert(Customer, frame) == len(awkward)
    rows = {c.external_id: c for c in Customer.objects.all()}
    for i, text in enumerate(awkward):
        row = rows[f"k{i}"]
        assert row.name == text
        assert row.attributes == {"note": text}
        assert row.erased is (i % 2 == 0)
    assert [rows[f"k{i}"].churn_probability for i in range(6)] == [
        0.1 + 0.2,
        None,
        1e-300,
        0.0,
        1.0,
        2 / 3,
    ]
    assert [rows[f"k{i}"].score_student_leaf for i in range(6)] == [3, None, 0, None, 7, 1]
    assert str(rows["k0"].signup_date) == "2024-02-29" and rows["k1"].signup_date is None
    assert rows["k0"].scored_at.isoformat() == "2024-01-02T03:04:05.123456+00:00"
    assert rows["k1"].scored_at is None


def test_copy_text_marks_null_only_where_asked_and_escapes_once() -> None:
    from common.db.bulk import copy_text

    frame = pd.DataFrame(
        {
            "text": ["a\tb", None, "\\N"],
            "number": [1.5, float("nan"), 0.1 + 0.2],
            "flag": [True, False, True],
            "count": pd.array([1, None, 3], dtype="Int64"),
            "maybe": pd.array([None, True, False], dtype="boolean"),
        }
    )
    assert copy_text(frame, null_when_missing={"number", "count", "maybe"}) == (
        "a\\tb\t1.5\tt\t1\t\\N\n\t\\N\tf\t\\N\tt\n\\\\N\t0.30000000000000004\tt\t3\tf\n"
    )


def test_copy_text_writes_each_float_as_its_shortest_round_trip_text() -> None:
    from common.db.bulk import copy_text

    frame = pd.DataFrame(
        {
            "double": np.array([0.1, 1e22, 5e-324, float("nan")]),
            "single": np.array([0.1, 2.5, 1e-7, float("nan")], dtype=np.float32),
        }
    )
    lines = copy_text(frame, null_when_missing={"double", "single"}).splitlines()
    assert lines == ["0.1\t0.1", "1e+22\t2.5", "5e-324\t1e-07", "\\N\t\\N"]


def test_copy_text_of_one_value_columns_is_the_same_text_as_of_varying_ones() -> None:
    """A column holding one value throughout (a run's id, a batch's timestamp) is formatted
    once and repeated; the text is what the same column gives when a row differs."""
    from common.db.bulk import _one_value, _wire_frame, copy_text
    from scoring.models import CustomerScore

    stamp = pd.Timestamp("2024-05-06 07:08:09.123456", tz="UTC")
    same = pd.DataFrame(
        {
            "run_id": [7, 7, 7],
            "scored_at": [stamp] * 3,
            "student_leaf": pd.array([2, 2, 2], dtype="Int16"),
        }
    )
    varied = pd.concat(
        [same, pd.DataFrame({"run_id": [8], "scored_at": [stamp.replace(year=2025)]})],
        ignore_index=True,
    ).astype({"student_leaf": "Int16"})
    assert _one_value(same["run_id"]) and _one_value(same["scored_at"])
    assert not _one_value(varied["run_id"]) and not _one_value(varied["scored_at"])
    for frame in (same, varied):
        assert frame["scored_at"].dtype == same["scored_at"].dtype
    one, many = (
        copy_text(_wire_frame(f, CustomerScore), null_when_missing={"student_leaf"})
        for f in (same, varied)
    )
    # (the timestamps' text is the backend's: "+00:00" on PostgreSQL, naive UTC on SQLite)
    assert one.splitlines()[0].startswith("7\t2024-05-06 07:08:09.123456")
    assert one.splitlines() == many.splitlines()[:3] == [one.splitlines()[0]] * 3
    assert many.splitlines()[3].startswith("8\t2025-05-06 07:08:09.123456")
    assert many.splitlines()[3].endswith("\t\\N")
