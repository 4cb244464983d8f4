"""Line-level order files: lines grouped into orders, products upserted, cancellations become
refunds, guests and duplicates counted, and importing the same file again changes nothing."""

from __future__ import annotations

import csv
import time
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from customers.importers import import_file
from customers.line_import import LineImportSummary, import_order_lines
from customers.models import Customer, LineRefund, Order, OrderLine, Product
from customers.selectors import orders_frame_for_ids
from tests.conftest import shared_file

pytestmark = pytest.mark.django_db

HEADER = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]
SHOP = [
    ["1001", "A1", "Red mug", "2", "2011-01-03 10:00:00", "3.50", "17850.0", "United Kingdom"],
    ["1001", "B2", "Blue cup", "1", "2011-01-03 10:00:00", "5.00", "17850.0", "United Kingdom"],
    ["1001", "B2", "Blue cup", "1", "2011-01-03 10:00:00", "5.00", "17850.0", "United Kingdom"],
    ["1002", "A1", "Red mug", "4", "2011-01-05 11:00:00", "3.40", "", "United Kingdom"],
    ["1003", "A1", "Red mug", "1", "2011-02-01 09:00:00", "3.60", "12345.0", "France"],
    ["C1004", "A1", "Red mug", "-1", "2011-01-10 12:00:00", "3.50", "17850.0", "United Kingdom"],
    ["C1005", "Z9", "Old thing", "-2", "2011-01-11 12:00:00", "1.25", "12345.0", "France"],
]


def write(tmp_path: Path, rows: list[list[str]], name: str = "shop.csv") -> Path:
    path = tmp_path / name
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def load(path: Path, **options: Any) -> LineImportSummary:
    options.setdefault("create_customers", True)
    summary = import_order_lines(path=path, currency="GBP", **options)
    assert isinstance(summary, LineImportSummary)
    return summary


def completed_revenue(external_id: str) -> float:
    """What the churn features read: the customer's completed orders' amounts."""
    pk = Customer.objects.get(external_id=external_id).pk
    orders = orders_frame_for_ids(first_id=pk, last_id=pk)
    return float(orders.loc[orders["status"] == "completed", "amount"].sum())


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    return {
        "orders": list(
            Order.objects.order_by("external_id").values_list(
                "external_id",
                "customer__external_id",
                "placed_at",
                "amount",
                "status",
                "item_count",
                "updated_at",
            )
        ),
        "lines": list(
            OrderLine.objects.order_by("order__external_id", "line_no").values_list(
                "order__external_id",
                "line_no",
                "product__external_id",
                "quantity",
                "unit_price",
                "refunded_quantity",
            )
        ),
        "products": list(
            Product.objects.order_by("external_id").values_list(
                "external_id", "name", "price", "updated_at"
            )
        ),
        "refunds": list(
            LineRefund.objects.order_by("external_id", "line_no").values_list(
                "external_id", "line_no", "line_id"
            )
        ),
    }


def test_lines_make_orders_whose_totals_come_from_the_lines(tmp_path: Path) -> None:
    summary = load(write(tmp_path, SHOP))
    first = Order.objects.get(external_id="1001")
    # 2 × 3.50 + 1 × 5.00 (the repeated line stored once), less the cancelled mug (3.50).
    assert (first.amount, first.item_count, first.status) == (Decimal("8.50"), 2, "completed")
    assert first.customer.external_id == "17850"  # "17850.0" as a spreadsheet wrote it
    assert first.currency == "GBP"
    lines = first.lines.order_by("line_no")
    assert [(li.line_no, li.product.external_id, li.quantity) for li in lines] == [
        (1, "A1", 2),
        (2, "B2", 1),
    ]
    assert lines[0].refunded_quantity == 1
    mug = Product.objects.get(external_id="A1")
    assert (mug.name, mug.price) == ("Red mug", Decimal("3.600"))  # the latest sale's price
    assert Customer.objects.get(external_id="12345").country == "France"
    assert (summary.rows, summary.orders, summary.customers) == (7, 2, 2)
    assert (summary.created, summary.products_created) == (3, 3)


def test_a_cancellation_reduces_the_customers_completed_revenue(tmp_path: Path) -> None:
    purchases = [row for row in SHOP if not row[0].startswith("C")]
    load(write(tmp_path, purchases, "sales.csv"))
    before = completed_revenue("17850")
    summary = load(write(tmp_path, SHOP))
    assert before == pytest.approx(12.00)
    assert completed_revenue("17850") == pytest.approx(8.50)
    assert (summary.cancellations_matched, summary.orders_refund_changed) == (1, 1)


def test_a_fully_cancelled_order_reads_as_refunded(tmp_path: Path) -> None:
    rows = [
        ["2001", "A1", "Red mug", "3", "2011-03-01 10:00:00", "2.00", "500", "France"],
        ["C2002", "A1", "Red mug", "-3", "2011-03-02 10:00:00", "2.00", "500", "France"],
    ]
    load(write(tmp_path, rows))
    order = Order.objects.get(external_id="2001")
    assert (order.status, order.amount, order.item_count) == ("refunded", Decimal("6.00"), 3)
    assert completed_revenue("500") == 0


def test_an_unmatched_cancellation_is_kept_as_a_refunded_order(tmp_path: Path) -> None:
    summary = load(write(tmp_path, SHOP))
    refund = Order.objects.get(external_id="C1005")
    assert (refund.status, refund.amount, refund.item_count) == ("refunded", Decimal("2.50"), 2)
    assert refund.customer.external_id == "12345"
    assert (summary.cancellations, summary.cancellations_unmatched) == (2, 1)
    assert summary.refunded_orders == 1
    assert Product.objects.filter(external_id="Z9").exists()


def test_a_cancellation_before_its_sale_in_the_file_still_matches(tmp_path: Path) -> None:
    rows = [
        ["C3002", "B2", "Blue cup", "-1", "2011-04-02 10:00:00", "5.00", "600", "Spain"],
        ["3001", "B2", "Blue cup", "2", "2011-04-01 10:00:00", "5.00", "600", "Spain"],
    ]
    summary = load(write(tmp_path, rows), chunk_rows=1)
    assert summary.cancellations_matched == 1
    assert Order.objects.get(external_id="3001").amount == Decimal("5.00")
    assert not Order.objects.filter(external_id="C3002").exists()


def test_guest_lines_are_rejected_with_their_reason_and_counted(tmp_path: Path) -> None:
    summary = load(write(tmp_path, SHOP))
    assert (summary.guest_lines, summary.rejected) == (1, 1)
    assert summary.first_rejects[0]["line"] == 5
    assert "no customer id" in summary.first_rejects[0]["reason"]
    assert summary.rejects_path and "1002" in Path(summary.rejects_path).read_text()
    assert not Order.objects.filter(external_id="1002").exists()


def test_skipped_guest_lines_are_counted_but_not_written_as_rejects(tmp_path: Path) -> None:
    summary = load(write(tmp_path, SHOP), guest_orders="skip")
    assert (summary.guest_lines, summary.rejected, summary.rejects_path) == (1, 0, None)


def test_exact_duplicate_lines_are_counted_reported_and_stored_once(tmp_path: Path) -> None:
    summary = load(write(tmp_path, SHOP), chunk_rows=2)  # the repeat sits in the next chunk
    assert summary.duplicates == 1
    assert summary.first_duplicates == [{"line": 4, "first_line": 3}]
    assert (
        OrderLine.objects.filter(order__external_id="1001", product__external_id="B2").count() == 1
    )


def test_reimporting_the_file_changes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, SHOP)
    load(path)
    before = snapshot()
    time.sleep(0.01)  # so a rewritten row would show a new updated_at
    again = load(path)
    assert snapshot() == before
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert (again.orders_created, again.orders_updated, again.orders_refund_changed) == (0, 0, 0)
    assert (again.products_created, again.products_updated) == (0, 0)


def test_small_chunks_give_the_same_result_as_one(tmp_path: Path) -> None:
    path = write(tmp_path, SHOP)
    load(path, chunk_rows=2)
    chunked = snapshot()
    Customer.objects.all().delete()
    Order.objects.all().delete()
    Product.objects.all().delete()
    load(path)
    whole = snapshot()
    for kind in ("orders", "lines"):
        drop_times = [row[:6] for row in whole[kind]]
        assert [row[:6] for row in chunked[kind]] == drop_times


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (
            ["4001", "A1", "Mug", "-2", "2011-05-01 10:00:00", "1.00", "700", "Spain"],
            "quantity: a negative quantity belongs on a cancellation invoice",
        ),
        (
            ["4001", "A1", "Mug", "0", "2011-05-01 10:00:00", "1.00", "700", "Spain"],
            "must not be 0",
        ),
        (
            ["4001", "A1", "Mug", "2", "2011-05-01 10:00:00", "-1.00", "700", "Spain"],
            "unit_price: must be at least 0",
        ),
        (["4001", "A1", "Mug", "two", "2011-05-01 10:00:00", "1.00", "700", "Spain"], "quantity"),
        (
            ["4000", "A1", "Mug", "1", "2011-05-01 10:00:00", "1.00", "701", "Spain"],
            "customer: invoice '4000' belongs to customer '700'",
        ),
    ],
)
def test_a_bad_line_is_rejected_naming_its_line_and_field(
    tmp_path: Path, row: list[str], reason: str
) -> None:
    good = ["4000", "B2", "Cup", "1", "2011-05-01 10:00:00", "2.00", "700", "Spain"]
    summary = load(write(tmp_path, [good, row]))
    assert summary.rejected == 1
    assert summary.first_rejects[0]["line"] == 3
    assert reason in summary.first_rejects[0]["reason"]
    assert Order.objects.get(external_id="4000").amount == Decimal("2.00")


def test_strict_refuses_the_whole_file_for_one_bad_line(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="bad row"):
        load(write(tmp_path, SHOP), strict=True)
    assert not Order.objects.exists() and not Product.objects.exists()


def test_unknown_customers_are_rejected_without_create_customers(tmp_path: Path) -> None:
    summary = load(write(tmp_path, SHOP[:1]), create_customers=False)
    assert summary.rejected == 1
    assert "unknown customer '17850'" in summary.first_rejects[0]["reason"]


def test_import_orders_reads_line_files_with_the_usual_map(tmp_path: Path) -> None:
    rows = [["9001", "A1", "Mug", "2", "05/01/2011 10:00", "1.50", "800", "Japan"]]
    path = tmp_path / "renamed.csv"
    path.write_text(
        "Invoice,Item,Text,Units,When,Each,Buyer,Land\n" + "\n".join(",".join(r) for r in rows)
    )
    out = StringIO()
    call_command(
        "import_orders",
        str(path),
        "--map",
        "Invoice=order",
        "Item=product",
        "Text=product_name",
        "Units=quantity",
        "When=placed_at",
        "Each=unit_price",
        "Buyer=customer",
        "Land=country",
        "--date-format",
        "%d/%m/%Y %H:%M",
        "--create-customers",
        "--no-progress",
        stdout=out,
    )
    assert "orders 1 (created 1" in out.getvalue()
    order = Order.objects.get(external_id="9001")
    assert (order.amount, order.placed_at.month) == (Decimal("3.00"), 1)


def test_an_order_level_file_is_still_imported_per_order(tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("order_id,customer_id,date,amount\no1,c1,2024-01-02,10.50\n")
    summary = import_file(kind="orders", path=path, create_customers=True)
    assert not isinstance(summary, LineImportSummary)
    assert Order.objects.get(external_id="o1").amount == Decimal("10.50")
    assert not OrderLine.objects.exists()


def test_a_line_file_with_a_bad_map_names_the_problem(tmp_path: Path) -> None:
    path = write(tmp_path, SHOP)
    with pytest.raises(CommandError, match="--map names column 'Nope'"):
        call_command("import_orders", str(path), "--map", "Nope=product", "--no-progress")


@pytest.mark.slow
@pytest.mark.postgres
def test_the_uci_shop_file_imports_with_its_documented_counts(
    require_postgres: None, tmp_path: Path
) -> None:
    path = shared_file("online_retail_uci352.csv.gz")
    first = load(path, rejects_path=tmp_path / "rejects.csv")
    assert first.rows == 541_909
    assert (first.guest_lines, first.rejected) == (135_080, 135_080)
    assert first.duplicates == 5_268
    # 541,909 − 135,080 guests − 5,225 duplicates of kept lines = 392,732 sale lines + 8,872
    # cancellation lines.
    assert (first.created, first.cancellations) == (392_732, 8_872)
    assert first.cancellations_matched + first.cancellations_unmatched == 8_872
    assert (first.orders, first.customers, first.products_created) == (18_536, 4_372, 3_684)
    assert (
        Order.objects.filter(status="completed").exclude(external_id__startswith="C").count()
        > 18_000
    )
    before = snapshot()
    again = load(path, rejects_path=tmp_path / "rejects.csv")
    assert (again.created, again.updated, again.unchanged) == (0, 0, 392_732)
    assert (again.orders_created, again.orders_updated, again.products_updated) == (0, 0, 0)
    assert snapshot() == before


def test_a_gzip_compressed_file_imports_like_the_plain_one(tmp_path: Path) -> None:
    import gzip

    plain = write(tmp_path, SHOP)
    packed = tmp_path / "shop.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    summary = load(packed)
    assert (summary.rows, summary.created, summary.duplicates) == (7, 3, 1)
    assert Order.objects.get(external_id="1001").amount == Decimal("8.50")
