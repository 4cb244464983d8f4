"""Validation of imported and posted records: every field checked at once, each bad row
named with its field and what was expected, valid rows typed and kept."""

from __future__ import annotations

import pandas as pd
import pytest

from customers.validation import SPECS, MappingError, map_columns, validate_records


def _validate(kind: str, rows: list[dict[str, object]], **options: object) -> tuple:
    frame = pd.DataFrame(rows, index=range(2, len(rows) + 2))
    result = validate_records(frame, SPECS[kind], **options)  # type: ignore[arg-type]
    return result.valid, result.errors


def test_valid_orders_are_typed_and_blanks_get_defaults() -> None:
    valid, errors = _validate(
        "orders",
        [
            {
                "customer": "c1",
                "placed_at": "2024-05-31T14:00:00+02:00",
                "amount": "12.50",
                "currency": None,
                "item_count": "",
            }
        ],
    )
    assert errors.empty
    row = valid.iloc[0]
    assert row["amount"] == 12.5 and row["currency"] == "USD" and row["item_count"] == 1
    assert row["placed_at"] == pd.Timestamp("2024-05-31T12:00:00Z")


def test_each_bad_field_is_named_with_what_was_expected() -> None:
    valid, errors = _validate(
        "orders",
        [
            {"customer": "c1", "placed_at": "yesterday", "amount": "-3", "item_count": "1.5"},
            {"customer": "c2", "placed_at": "2024-01-01", "amount": "7", "status": "lost"},
            {"customer": "c3", "placed_at": "2024-01-01", "amount": "8"},
        ],
    )
    reasons = {(r.position, r.field): r.reason for r in errors.itertuples()}
    assert reasons[(2, "placed_at")].startswith("expected a date and time (ISO 8601")
    assert reasons[(2, "placed_at")].endswith("got 'yesterday'")
    assert reasons[(2, "amount")] == "must be at least 0"
    assert reasons[(2, "item_count")] == "expected a whole number, got '1.5'"
    assert reasons[(3, "status")].startswith("expected one of completed")
    assert list(valid.index) == [4]  # only the good row is kept


def test_required_fields_and_lengths() -> None:
    _valid, errors = _validate("customers", [{"name": "x"}])
    assert errors[["field", "reason"]].values.tolist() == [["external_id", "is required"]]
    _valid, errors = _validate("customers", [{"external_id": "x" * 65}])
    assert errors["reason"].tolist() == ["is longer than 64 characters"]


def test_emails_and_time_zones_are_checked() -> None:
    valid, errors = _validate(
        "customers",
        [
            {"external_id": "a", "email": "Ann@Example.COM", "time_zone": "Europe/Paris"},
            {"external_id": "b", "email": "not-an-email", "time_zone": "Mars/Olympus"},
        ],
    )
    assert valid.loc[2, "email"] == "ann@example.com"
    fields = dict(zip(errors["field"], errors["reason"], strict=True))
    assert fields["email"] == "expected an email address, got 'not-an-email'"
    assert "IANA time zone" in fields["time_zone"] and "Mars/Olympus" in fields["time_zone"]


def test_unknown_columns_become_attributes_with_numbers_as_numbers() -> None:
    valid, errors = _validate(
        "customers",
        [
            {"external_id": "a", "Contract": "Month-to-month", "tenure": "5"},
            {"external_id": "b", "Contract": "", "tenure": "12"},
        ],
    )
    assert errors.empty
    assert valid.loc[2, "attributes"] == {"Contract": "Month-to-month", "tenure": 5}
    assert valid.loc[3, "attributes"] == {"tenure": 12}  # a blank cell is left out


def test_a_custom_date_format_is_used() -> None:
    valid, errors = _validate(
        "orders",
        [{"customer": "c", "placed_at": "19970101", "amount": "1"}],
        date_format="%Y%m%d",
    )
    assert errors.empty and valid.iloc[0]["placed_at"] == pd.Timestamp("1997-01-01", tz="UTC")


def test_columns_are_mapped_by_loose_name_alias_and_explicit_map() -> None:
    spec = SPECS["orders"]
    renames = map_columns(["Customer ID", "Order_Date", "total", "extra"], spec, None)
    assert renames == {"Customer ID": "customer", "Order_Date": "placed_at", "total": "amount"}
    mapped = map_columns(["who", "when", "amount"], spec, {"who": "customer", "when": "placed_at"})
    assert mapped["who"] == "customer" and mapped["when"] == "placed_at"
    with pytest.raises(MappingError):
        map_columns(["amount"], spec, {"nope": "customer"})


def test_the_range_checks_match_the_database_columns() -> None:
    """The specs' ranges are the models' columns: a drift would send values the database
    refuses mid-import (issue 12, point 4)."""
    from django.db import models

    from customers.models import Order
    from customers.validation import INT_MAX

    for f in SPECS["orders"].fields:
        column = Order._meta.get_field(f.name)
        if isinstance(column, models.DecimalField):
            assert (f.max_digits, f.decimal_places) == (column.max_digits, column.decimal_places)
        elif isinstance(column, models.IntegerField):
            assert f.maximum == INT_MAX
    valid, errors = _validate(
        "orders",
        [
            {"customer": "c", "placed_at": "2024-01-01", "amount": "1e15"},
            {"customer": "c", "placed_at": "2024-01-01", "amount": "-Infinity"},
            {"customer": "c", "placed_at": "2024-01-01", "amount": "1", "item_count": "2e9"},
        ],
    )
    assert list(valid.index) == [4]
    assert errors["reason"].tolist()[-1].startswith("must be less than 10,000,000,000")


def test_words_bare_years_and_column_overflows_are_rejects_written_dates_pass() -> None:
    rows = [
        {"customer": "c1", "placed_at": "May 31, 2024", "amount": "1"},
        {"customer": "c1", "placed_at": "2024-05-31", "amount": "1"},
        {"customer": "c1", "placed_at": "now", "amount": "1"},
        {"customer": "c1", "placed_at": "2026", "amount": "1"},
        {"customer": "c1", "placed_at": "2024-05-31", "amount": "1e15"},
        {"customer": "c1", "placed_at": "2024-05-31", "amount": "inf"},
        {"customer": "c1", "placed_at": "2024-05-31", "amount": "1", "item_count": "2147483648"},
        {"customer": "c1\x00", "placed_at": "2024-05-31", "amount": "1"},
    ]
    valid, errors = _validate("orders", rows)
    assert list(valid.index) == [2, 3]
    assert sorted(zip(errors["position"], errors["field"], strict=True)) == [
        (4, "placed_at"),
        (5, "placed_at"),
        (6, "amount"),
        (7, "amount"),
        (8, "item_count"),
        (9, "customer"),
    ]


def test_the_api_needs_a_time_of_day_in_a_datetime() -> None:
    rows = [{"customer": "c1", "placed_at": "2024-05-31", "amount": "1"}]
    assert _validate("orders", rows)[1].empty
    errors = _validate("orders", rows, date_format="ISO8601", require_time=True)[1]
    assert list(errors["field"]) == ["placed_at"]
