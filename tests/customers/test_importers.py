"""File imports: real data sets load with their documented counts; bad rows never half-load."""

from __future__ import annotations

import csv
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import CommandError, call_command
from django.db.models import Sum

from customers.models import Customer, Event, Order
from tests.conftest import shared_file

pytestmark = pytest.mark.django_db

CDNOW_MAP = [
    "customer_id=customer",
    "date=placed_at",
    "dollar_value=amount",
    "number_of_cds=item_count",
]


def run(command: str, *args: str) -> str:
    out = StringIO()
    call_command(command, *args, "--no-progress", stdout=out)
    return out.getvalue()


def import_cdnow(path: Path) -> str:
    return run(
        "import_orders",
        str(path),
        "--map",
        *CDNOW_MAP,
        "--date-format",
        "%Y%m%d",
        "--create-customers",
    )


def write_csv(path: Path, rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_telco_file_loads_7043_customers_with_typed_attributes() -> None:
    out = run("import_customers", str(shared_file("WA_Fn-UseC_-Telco-Customer-Churn.csv")))
    assert "created 7,043" in out
    assert Customer.objects.count() == 7043
    first = Customer.objects.get(external_id="7590-VHVEG")
    assert first.attributes["Contract"] == "Month-to-month"
    assert first.attributes["MonthlyCharges"] == 29.85
    assert first.attributes["SeniorCitizen"] == 0
    assert first.attributes["Churn"] == "No"
    # The 11 customers with tenure 0 have a blank TotalCharges: left out, not a bogus value.
    blank = Customer.objects.filter(attributes__tenure=0)
    assert blank.count() == 11
    assert all("TotalCharges" not in c.attributes for c in blank)


def test_cdnow_file_loads_69659_orders_and_creates_23570_customers() -> None:
    out = import_cdnow(shared_file("CDNOW_master.txt"))
    assert "created 69,659" in out
    assert Order.objects.count() == 69659
    assert Customer.objects.count() == 23570
    total = Order.objects.aggregate(total=Sum("amount"))["total"]
    assert round(total, 2) == Decimal("2500315.63")  # SQLite sums decimals as floats
    first = Order.objects.filter(customer__external_id="00001").get()
    assert first.placed_at.isoformat() == "1997-01-01T00:00:00+00:00"
    assert first.item_count == 1 and first.amount == Decimal("11.77")


def test_importing_the_same_files_twice_changes_nothing() -> None:
    telco = shared_file("WA_Fn-UseC_-Telco-Customer-Churn.csv")
    cdnow = shared_file("CDNOW_master.txt")
    run("import_customers", str(telco))
    import_cdnow(cdnow)
    stamp = Order.objects.order_by("pk").values_list("updated_at", flat=True).first()
    assert "created 0 · updated 0 · unchanged 7,043" in run("import_customers", str(telco))
    assert "created 0 · updated 0 · unchanged 69,659" in import_cdnow(cdnow)
    assert Order.objects.count() == 69659
    assert Order.objects.order_by("pk").values_list("updated_at", flat=True).first() == stamp


def test_changed_rows_are_updated_and_attributes_merged(tmp_path: Path) -> None:
    first = write_csv(tmp_path / "a.csv", [["id", "email", "plan"], ["c1", "a@x.io", "gold"]])
    second = write_csv(tmp_path / "b.csv", [["id", "email", "region"], ["c1", "b@x.io", "north"]])
    run("import_customers", str(first))
    out = run("import_customers", str(second))
    assert "created 0 · updated 1" in out
    customer = Customer.objects.get(external_id="c1")
    assert customer.email == "b@x.io"
    assert customer.attributes == {"plan": "gold", "region": "north"}


def test_bad_rows_go_to_the_rejects_file_and_the_rest_is_imported(tmp_path: Path) -> None:
    Customer.objects.create(external_id="c1")
    path = write_csv(
        tmp_path / "orders.csv",
        [
            ["order_id", "customer_id", "placed_at", "amount", "status"],
            ["o1", "c1", "2024-01-05T10:00:00Z", "10.50", "completed"],
            ["o2", "c1", "not a date", "3", "completed"],
            ["o3", "c1", "2024-01-06", "-4", "completed"],
            ["o4", "nobody", "2024-01-07", "5", "completed"],
            ["o5", "c1", "2024-01-08", "5", "lost"],
            ["o1", "c1", "2024-01-09", "7", "completed"],
            ["o6", "c1", "2024-01-10", "12", "REFUNDED"],
        ],
    )
    out = run("import_orders", str(path))
    assert "created 2" in out and "rejected 5" in out
    assert sorted(Order.objects.values_list("external_id", flat=True)) == ["o1", "o6"]
    assert Order.objects.get(external_id="o6").status == "refunded"
    rejects = pd.read_csv(tmp_path / "orders.csv.rejects.csv", dtype=str)
    by_line = dict(zip(rejects["line"].astype(int), rejects["reason"], strict=True))
    assert set(by_line) == {3, 4, 5, 6, 7}
    assert by_line[3].startswith("placed_at: expected a date and time")
    assert by_line[4] == "amount: must be at least 0"
    assert "unknown customer 'nobody'" in by_line[5]
    assert by_line[6].startswith("status: expected one of completed, refunded, cancelled")
    assert by_line[7] == "external_id: duplicate of line 2"
    # The rejects file keeps the original row so it can be fixed and re-imported.
    assert list(rejects.columns[:3]) == ["line", "reason", "order_id"]


def test_strict_mode_rejects_the_whole_file_and_writes_nothing(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "customers.csv",
        [
            ["id", "email", "time_zone"],
            ["c1", "ok@x.io", "Europe/Paris"],
            ["c2", "nope", "Mars/Base"],
        ],
    )
    with pytest.raises(CommandError) as error:
        run("import_customers", str(path), "--strict")
    assert "--strict: nothing was imported" in str(error.value)
    assert "line 3: email: expected an email address, got 'nope'" in str(error.value)
    assert "time_zone: expected an IANA time zone" in str(error.value)
    assert Customer.objects.count() == 0


def test_strict_mode_also_undoes_customers_created_for_orders(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "orders.csv",
        [["customer_id", "date", "amount"], ["c1", "2024-01-01", "5"], ["c2", "2024-01-02", "x"]],
    )
    with pytest.raises(CommandError):
        run("import_orders", str(path), "--strict", "--create-customers")
    assert Customer.objects.count() == 0 and Order.objects.count() == 0


def test_orders_of_unknown_customers_are_rejected_without_create_flag(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "o.csv", [["customer", "placed_at", "amount"], ["zz", "2024-01-01", "1"]]
    )
    out = run("import_orders", str(path))
    assert "rejected 1" in out and Order.objects.count() == 0


def test_xlsx_sheet_and_semicolon_csv_are_read(tmp_path: Path) -> None:
    frame = pd.DataFrame({"CustomerID": ["x1", "x2"], "Tenure": [3, None], "City Tier": [1, 3]})
    xlsx = tmp_path / "c.xlsx"
    with pd.ExcelWriter(xlsx) as writer:
        pd.DataFrame({"other": [1]}).to_excel(writer, sheet_name="Notes", index=False)
        frame.to_excel(writer, sheet_name="E Comm", index=False)
    assert "created 2" in run("import_customers", str(xlsx), "--sheet", "E Comm")
    assert Customer.objects.get(external_id="x1").attributes == {"Tenure": 3, "City Tier": 1}
    semi = tmp_path / "e.csv"
    semi.write_text("customer;kind;occurred_at;page\nx1;visit;2024-03-01 12:00;home\n")
    assert "created 1" in run("import_events", str(semi))
    event = Event.objects.get()
    assert event.properties == {"page": "home"} and event.kind == "visit"


def test_mapping_to_a_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", [["a", "b"], ["1", "2"]])
    with pytest.raises(
        CommandError, match="--map names column 'zzz', which the file does not have"
    ):
        run("import_customers", str(path), "--map", "zzz=external_id")
    with pytest.raises(CommandError, match=r"no column for required field\(s\) external_id"):
        run("import_customers", str(path))


def test_a_chunk_of_only_bad_rows_and_mixed_numeric_errors_are_rejects_not_crashes(
    tmp_path: Path,
) -> None:
    Customer.objects.create(external_id="k1")
    bad = write_csv(
        tmp_path / "bad.csv", [["customer_id", "placed_at", "amount"], ["k1", "bad", "5"]]
    )
    assert "rejected 1" in run("import_orders", str(bad))
    mixed = write_csv(
        tmp_path / "mixed.csv",
        [
            ["customer_id", "placed_at", "amount"],
            ["k1", "2024-01-01", ""],
            ["k1", "2024-01-02", "-5"],
        ],
    )
    out = run("import_orders", str(mixed))
    assert "rejected 2" in out and Order.objects.count() == 0
