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

from customers.importers import ImportError_, import_file
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
    assert "line 3: email: expected an email address;" in str(error.value)
    assert "nope" not in str(error.value)  # personal fields' values are not quoted
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


def _orders_file(path: Path, count: int, *, bad: dict[int, str] | None = None) -> Path:
    """`count` orders of customer k1, one per line from line 2; `bad` replaces whole lines."""
    lines = ["order_id,customer_id,placed_at,amount"]
    lines += [f"o{n},k1,2024-01-01T10:00:00Z,{n}.50" for n in range(2, count + 2)]
    for number, text in (bad or {}).items():
        lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")
    return path


def _rejects(path: Path) -> dict[int, str]:
    frame = pd.read_csv(path.with_name(path.name + ".rejects.csv"), dtype=str)
    return dict(zip(frame["line"].astype(int), frame["reason"], strict=True))


def test_a_line_with_an_extra_field_is_a_reject_and_every_other_row_is_imported(
    tmp_path: Path,
) -> None:
    """Issue 12, point 4: one extra field on a late line no longer stops the import half-way."""
    Customer.objects.create(external_id="k1")
    extra = "o23,k1,2024-01-01T10:00:00Z,23.50,surplus"
    path = _orders_file(tmp_path / "orders.csv", 30, bad={23: extra, 4: extra.replace("23", "4")})
    summary = import_file(kind="orders", path=path, chunk_rows=5)
    assert (summary.created, summary.rejected) == (28, 2)
    assert Order.objects.count() == 28
    assert not Order.objects.filter(external_id__in=["o4", "o23"]).exists()
    assert Order.objects.get(external_id="o24").amount == Decimal("24.50")  # lines still aligned
    assert _rejects(path) == {
        4: "malformed line: expected 4 fields, saw 5 (check the delimiter)",
        23: "malformed line: expected 4 fields, saw 5 (check the delimiter)",
    }


def test_a_malformed_line_in_strict_mode_rejects_the_file(tmp_path: Path) -> None:
    Customer.objects.create(external_id="k1")
    path = _orders_file(tmp_path / "orders.csv", 12, bad={11: "o11,k1,2024-01-01,1,2,3"})
    with pytest.raises(ImportError_, match="line 11: malformed line: expected 4 fields, saw 6"):
        import_file(kind="orders", path=path, chunk_rows=3, strict=True)
    assert Order.objects.count() == 0


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        ("1e15", "amount: must be less than 10,000,000,000 (at most 9,999,999,999.99)"),
        ("9999999999.999", "amount: must be less than 10,000,000,000 (at most 9,999,999,999.99)"),
        ("Infinity", "amount: expected a finite number, got 'Infinity'"),
        ("inf", "amount: expected a finite number, got 'inf'"),
        ("5,2147483648", "item_count: must be at most 2147483647"),
        (
            "5,1,1e12",
            "discount_amount: must be less than 10,000,000,000 (at most 9,999,999,999.99)",
        ),
    ],
)
def test_a_value_beyond_its_column_is_a_reject_not_a_database_error(
    tmp_path: Path, cells: str, reason: str
) -> None:
    """Issue 12, point 4: an amount of 1e15 was sent to the database (NumericValueOutOfRange
    on PostgreSQL) after the earlier chunks were committed; now it is one reject."""
    Customer.objects.create(external_id="k1")
    lines = ["order_id,customer_id,placed_at,amount,item_count,discount_amount"]
    lines += [f"o{n},k1,2024-01-0{n}T10:00:00Z,{n}" for n in range(2, 9)]
    lines[5] = f"o6,k1,2024-01-06T10:00:00Z,{cells}"
    path = tmp_path / "orders.csv"
    path.write_text("\n".join(lines) + "\n")
    summary = import_file(kind="orders", path=path, chunk_rows=2)
    assert (summary.created, summary.rejected) == (6, 1)
    assert _rejects(path) == {6: reason}
    assert Order.objects.filter(external_id="o8").exists()


def test_the_largest_amount_and_count_the_columns_hold_are_imported(tmp_path: Path) -> None:
    Customer.objects.create(external_id="k1")
    path = write_csv(
        tmp_path / "orders.csv",
        [
            ["customer_id", "placed_at", "amount", "item_count"],
            ["k1", "2024-01-01", "9999999999.99", "2147483647"],
        ],
    )
    assert import_file(kind="orders", path=path).created == 1
    order = Order.objects.get()
    assert (order.amount, order.item_count) == (Decimal("9999999999.99"), 2147483647)


def test_a_quote_never_closed_rejects_the_file_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """Every line after an open quote is one field: nothing to salvage line by line, so the
    file is refused whole, before its first chunk (the alternative is half a file)."""
    Customer.objects.create(external_id="k1")
    path = _orders_file(tmp_path / "orders.csv", 30, bad={25: 'o25,k1,"2024-01-01,1'})
    with pytest.raises(ImportError_, match=r"malformed \(nothing was imported\).*never closed"):
        import_file(kind="orders", path=path, chunk_rows=5)
    assert Order.objects.count() == 0


def test_a_quote_inside_an_unquoted_field_is_only_a_character(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text('id,screen\nc1,5" wide\nc2,7\n')
    assert import_file(kind="customers", path=path).created == 2
    assert Customer.objects.get(external_id="c1").attributes == {"screen": '5" wide'}


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16", "utf-8-sig"])
def test_latin_1_and_utf_16_files_are_imported(tmp_path: Path, encoding: str) -> None:
    """Issue 12, point 13: these ended in a raw UnicodeDecodeError."""
    path = tmp_path / "customers.csv"
    path.write_bytes("id;name;city\nc1;Zoë Ærø;Malmö\n".encode(encoding))
    assert "created 1" in run("import_customers", str(path))
    customer = Customer.objects.get()
    assert (customer.name, customer.attributes) == ("Zoë Ærø", {"city": "Malmö"})


def test_an_empty_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    path.write_text("")
    with pytest.raises(CommandError, match=r"customers\.csv: the file is empty"):
        run("import_customers", str(path))


def test_rows_with_a_missing_or_extra_field_do_not_change_the_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    path.write_text("id,name,plan\nc1,Ann\nc2,Bob,gold,extra\nc3,Cy,free\nc4,Di,gold\n")
    out = run("import_customers", str(path))
    assert "created 3" in out and "rejected 1" in out
    assert Customer.objects.get(external_id="c3").attributes == {"plan": "free"}
    assert _rejects(path)[3].startswith("malformed line: expected 3 fields, saw 4")


def test_the_rejects_file_neutralises_spreadsheet_formulas(tmp_path: Path) -> None:
    """A bad row's cells go back to a person, who opens them in a spreadsheet (OWASP CSV
    injection): =, +, -, @ at the start of a cell are quoted."""
    path = write_csv(
        tmp_path / "customers.csv",
        [
            ["id", "time_zone", "note"],
            ["@SUM(A1)", '=HYPERLINK("http://evil.example","x")', "+cmd|' /C calc'!A0"],
            ["c2", "UTC", "-2+3"],
        ],
    )
    assert "rejected 1" in run("import_customers", str(path))
    rejects = pd.read_csv(path.with_name("customers.csv.rejects.csv"), dtype=str)
    row = rejects.iloc[0]
    assert (row["id"], row["note"]) == ("'@SUM(A1)", "'+cmd|' /C calc'!A0")
    assert row["time_zone"] == '\'=HYPERLINK("http://evil.example","x")'
    assert row["reason"].startswith("time_zone: expected an IANA time zone")


def test_rejects_files_leave_out_name_email_and_phone_unless_asked(tmp_path: Path) -> None:
    """Issue 12, point 9: rejects files kept whole rows with emails and phone numbers."""
    rows = [
        ["id", "Full Name", "email", "phone", "time_zone", "plan"],
        ["c1", "Ann Smith", "ann@example.com", "+15550100", "Mars/Base", "gold"],
        ["c2", "Bob Jones", "bob(at)example.com", "+15550101", "UTC", "free"],
    ]
    path = write_csv(tmp_path / "customers.csv", rows)
    out = run("import_customers", str(path), "--map", "Full Name=name")
    assert "rejected 2" in out and "bob(at)" not in out
    text = path.with_name("customers.csv.rejects.csv").read_text()
    for personal in ("Ann", "ann@", "bob(at)", "Bob", "+1555"):
        assert personal not in text
    rejects = pd.read_csv(path.with_name("customers.csv.rejects.csv"), dtype=str)
    assert list(rejects.columns) == ["line", "reason", "id", "time_zone", "plan"]
    assert rejects["reason"].tolist() == [
        "time_zone: expected an IANA time zone such as Europe/Paris, got 'Mars/Base'",
        "email: expected an email address",
    ]
    run("import_customers", str(path), "--map", "Full Name=name", "--rejects-full-rows")
    full = pd.read_csv(path.with_name("customers.csv.rejects.csv"), dtype=str)
    assert full["email"].tolist() == ["ann@example.com", "bob(at)example.com"]
    assert full["reason"].iloc[1] == "email: expected an email address, got 'bob(at)example.com'"


def test_an_xlsx_formula_without_its_result_is_a_reject(tmp_path: Path) -> None:
    from openpyxl import Workbook

    Customer.objects.create(external_id="k1")
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in (
        ["customer_id", "placed_at", "amount"],
        ["k1", "2024-01-01", 5],
        ["k1", "2024-01-02", "=B2*2"],
    ):
        sheet.append(row)
    path = tmp_path / "orders.xlsx"
    book.save(path)
    summary = import_file(kind="orders", path=path)
    assert (summary.created, summary.rejected) == (1, 1)
    assert _rejects(path)[3].startswith("amount: a formula (=B2*2) whose result the file")
