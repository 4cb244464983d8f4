"""Line-level order files: one row per order line, grouped into orders by an invoice column.

`import_orders` hands a file here when its columns map to an order, a product, a quantity
and a unit price (`file_is_line_level`); see docs/importing.md. Per chunk, in one
transaction: products are upserted, sale lines and their orders written (order totals are
derived from the lines), cancellation lines stored. After the last chunk the cancellations are
matched to the lines they cancel (customers.services_lines.line_refunds_apply).

What a line becomes:
- no customer id (a guest's line): rejected with that reason (`guest_orders="skip"`: left out
  of the rejects file), counted either way;
- the same line as an earlier one, cell for cell: counted and reported as a duplicate, stored
  once;
- an invoice number starting with "C": a cancellation line (its quantity's sign is ignored);
- otherwise a sale line, numbered by its place among its invoice's lines in the file, so the
  same file imported again finds the same rows and changes nothing.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from django.db import DatabaseError, transaction

from common.db.bulk import UpsertCounts, bulk_upsert, tables_analyze
from common.tables import TableError, read_table_chunks
from customers import services, services_lines
from customers.importers import (
    PERSONAL_FIELDS,
    ImportError_,
    ImportSummary,
    RejectsWriter,
    StrictRejection,
    scan_with_progress_bar,
    summary_finish,
)
from customers.models import Customer, LineRefund, Order, OrderLine
from customers.validation import (
    INT_MAX,
    FieldSpec,
    MappingError,
    RecordSpec,
    join_reasons,
    map_columns,
    validate_records,
)

GuestOrders = Literal["reject", "skip"]

ORDER_LINE_SPEC = RecordSpec(
    "order_lines",
    (
        FieldSpec(
            "order",
            required=True,
            max_length=64,
            aliases=("invoice", "invoice_no", "invoice_number", "order_id", "order_no"),
        ),
        FieldSpec(
            "product", required=True, max_length=64, aliases=("stock_code", "sku", "product_id")
        ),
        FieldSpec("product_name", max_length=200, aliases=("description",), blank=""),
        FieldSpec("quantity", "int", required=True, maximum=INT_MAX, aliases=("qty",)),
        FieldSpec(
            "unit_price",
            "decimal",
            required=True,
            minimum=0,
            max_digits=12,
            decimal_places=3,
            aliases=("price",),
        ),
        FieldSpec("customer", max_length=64, aliases=("customer_id",)),
        FieldSpec(
            "placed_at", "datetime", required=True, aliases=("date", "order_date", "invoice_date")
        ),
        FieldSpec("currency", max_length=3, blank="USD"),
        FieldSpec("country", max_length=64, blank=""),
        FieldSpec("category", max_length=100, blank=""),
    ),
)
# The fields only a line-level file has: their columns tell the two order formats apart.
LINE_FIELDS = ("order", "product", "unit_price")
GUEST_REASON = "customer: no customer id (a guest's line; guest lines are not imported)"


def file_is_line_level(
    path: Path, *, mapping: dict[str, str] | None, delimiter: str | None, sheet: str | None
) -> bool:
    """Whether the file's header maps to order lines (an order, a product, a unit price)."""
    try:
        header = next(read_table_chunks(path, delimiter=delimiter, sheet=sheet, chunk_rows=1))
        renames = map_columns(list(header.columns), ORDER_LINE_SPEC, mapping)
    except (StopIteration, TableError, MappingError):
        return False
    return set(LINE_FIELDS) <= set(renames.values())


@dataclass
class LineImportSummary(ImportSummary):
    """created/updated/unchanged count the stored order lines; `rows` the lines read."""

    orders: int = 0
    orders_created: int = 0
    orders_updated: int = 0
    orders_refund_changed: int = 0  # orders whose totals this import's cancellations changed
    customers: int = 0
    products_created: int = 0
    products_updated: int = 0
    cancellations: int = 0
    cancellations_matched: int = 0
    cancellations_unmatched: int = 0
    refunded_orders: int = 0
    guest_lines: int = 0
    duplicates: int = 0
    first_duplicates: list[dict[str, int]] = field(default_factory=list)


@dataclass
class _FileState:
    """What later chunks need from earlier ones: per invoice its lines so far, customer and
    first time; the hashes of the lines seen (duplicates); the keys counted."""

    line_counts: dict[str, int] = field(default_factory=dict)
    invoice_customer: dict[str, str] = field(default_factory=dict)
    invoice_placed: dict[str, pd.Timestamp] = field(default_factory=dict)
    hashes: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    hash_lines: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    customers: set[str] = field(default_factory=set)
    orders: set[str] = field(default_factory=set)
    refund_invoices: set[str] = field(default_factory=set)


def import_order_lines(
    *,
    path: Path,
    mapping: dict[str, str] | None = None,
    date_format: str | None = None,
    delimiter: str | None = None,
    sheet: str | None = None,
    strict: bool = False,
    create_customers: bool = False,
    rejects_path: Path | None = None,
    rejects_full_rows: bool = False,
    currency: str = "USD",
    guest_orders: GuestOrders = "reject",
    progress: bool = False,
    chunk_rows: int = 50_000,
) -> LineImportSummary:
    """Import a line-level order file (see the module docstring); strict: all or nothing."""
    path = Path(path)
    started = time.perf_counter()
    summary = LineImportSummary(kind="orders", path=str(path))
    rejects = RejectsWriter(
        rejects_path or path.with_name(path.name + ".rejects.csv"), full_rows=rejects_full_rows
    )
    scan, bar = scan_with_progress_bar(path, kind="order lines", progress=progress)
    state = _FileState()
    counts = UpsertCounts()
    try:
        with transaction.atomic() if strict else nullcontext():
            chunks = read_table_chunks(
                path,
                delimiter=delimiter,
                sheet=sheet,
                chunk_rows=chunk_rows,
                on_malformed=rejects.add_malformed,
                scan=scan,
            )
            renames: dict[str, str] | None = None
            for raw in chunks:
                if renames is None:
                    renames = _renames(path, raw, mapping, rejects)
                reasons, chunk_counts = _import_chunk(
                    raw.rename(columns=renames),
                    state,
                    summary,
                    date_format=date_format,
                    currency=currency,
                    guest_orders=guest_orders,
                    create_customers=create_customers,
                )
                rejects.add(raw, reasons)
                counts += chunk_counts
                summary.rows += len(raw)
                bar.update(len(raw))
            _apply_refunds(state, summary, currency)
            if strict and rejects.count:
                raise StrictRejection(rejects.frame())
    except TableError as exc:
        raise ImportError_(str(exc)) from exc
    except DatabaseError as exc:
        kept = "nothing was imported" if strict else f"{summary.rows:,} lines before it were kept"
        raise ImportError_(
            f"{path}: the database refused a chunk ({type(exc).__name__}); {kept}"
        ) from exc
    finally:
        bar.close()
    summary.orders, summary.customers = len(state.orders), len(state.customers)
    finished = summary_finish(summary, counts, rejects, started)
    assert isinstance(finished, LineImportSummary)
    return finished


def _renames(
    path: Path, raw: pd.DataFrame, mapping: dict[str, str] | None, rejects: RejectsWriter
) -> dict[str, str]:
    try:
        renames = map_columns(list(raw.columns), ORDER_LINE_SPEC, mapping)
    except MappingError as exc:
        raise ImportError_(f"{path}: {exc}") from exc
    if not rejects.full_rows:
        rejects.hidden_columns = [c for c, f in renames.items() if f in PERSONAL_FIELDS]
    return renames


def _import_chunk(
    mapped: pd.DataFrame,
    state: _FileState,
    summary: LineImportSummary,
    *,
    date_format: str | None,
    currency: str,
    guest_orders: GuestOrders,
    create_customers: bool,
) -> tuple[pd.Series, UpsertCounts]:
    """Check, key and write one chunk (one transaction): a reason per rejected line, and the
    counts of the order lines written."""
    invoice = mapped["order"].astype("string").str.strip().fillna("")
    line_no = _line_numbers(invoice, state)
    duplicate = _duplicates(mapped, state, summary)
    customer = _customer_ids(mapped)
    guest = (customer.isna() | (customer == "")).to_numpy(dtype=bool)
    summary.guest_lines += int(guest.sum())
    result = validate_records(
        mapped.assign(customer=customer),
        ORDER_LINE_SPEC,
        date_format=date_format,
        defaults={"currency": currency, "product_name": "", "category": "", "country": ""},
    )
    reasons = [result.reasons_by_position()]
    if guest_orders == "reject" and guest.any():
        reasons.append(pd.Series(GUEST_REASON, index=mapped.index[guest]))
    records = result.valid.assign(line_no=line_no, cancel=_is_cancellation(invoice))
    keep = ~guest[mapped.index.get_indexer(records.index)]
    keep &= ~duplicate.reindex(records.index).to_numpy(dtype=bool)
    records = records[keep]
    checks = [*_line_checks(records), _invoice_customer_mismatch(records, state)]
    reasons += checks
    records = records.drop(index=pd.concat(checks).index)
    counts = UpsertCounts()
    if not records.empty:
        with transaction.atomic():
            records, unknown = _link_customers(records, create_customers, summary)
            reasons.append(unknown)
            counts = _write(records, state, summary)
    if guest_orders == "skip":  # a skipped guest line is only counted, whatever else is wrong
        skipped = mapped.index[guest]
        reasons = [r[~r.index.isin(skipped)] for r in reasons]
    reasons = [r for r in reasons if not r.empty]
    return (join_reasons(pd.concat(reasons)) if reasons else pd.Series(dtype=object)), counts


def _customer_ids(mapped: pd.DataFrame) -> pd.Series:
    """The customer id of each line as text (NA for a guest's line). Spreadsheets write
    whole-number ids as floats ("17850.0"): that id is "17850"."""
    if "customer" not in mapped.columns:
        return pd.Series(pd.NA, index=mapped.index, dtype="string")
    text = mapped["customer"].astype("string").str.strip()
    floats = text.str.endswith(".0").fillna(False).astype(bool)
    floats &= pd.to_numeric(text.where(floats), errors="coerce").notna()
    if floats.any():
        text = text.mask(floats, text.str[:-2])
    return text


def _line_numbers(invoice: pd.Series, state: _FileState) -> pd.Series:
    """Each line's place among its invoice's lines in the file (1, 2, …), across chunks."""
    before = invoice.map(state.line_counts).fillna(0).astype("int64")
    number = invoice.groupby(invoice, sort=False).cumcount() + 1 + before
    totals = invoice.value_counts(sort=False)
    for key, n in zip(totals.index.tolist(), totals.tolist(), strict=True):
        state.line_counts[key] = state.line_counts.get(key, 0) + n
    return number


def _duplicates(mapped: pd.DataFrame, state: _FileState, summary: LineImportSummary) -> pd.Series:
    """Whether each line repeats an earlier line of the file cell for cell (64-bit hashes)."""
    hashes = pd.util.hash_pandas_object(mapped, index=False).to_numpy()
    lines = mapped.index.to_numpy(dtype=np.int64)
    earlier = np.isin(hashes, state.hashes)
    repeated = earlier | pd.Series(hashes).duplicated().to_numpy()
    state.hashes = np.concatenate([state.hashes, hashes[~repeated]])
    state.hash_lines = np.concatenate([state.hash_lines, lines[~repeated]])
    summary.duplicates += int(repeated.sum())
    room = 20 - len(summary.first_duplicates)
    if room > 0 and repeated.any():
        shown = np.flatnonzero(repeated)[:room]
        first = pd.Index(state.hashes).get_indexer(hashes[shown])
        summary.first_duplicates += [
            {"line": int(lines[i]), "first_line": int(state.hash_lines[f])}
            for i, f in zip(shown, first, strict=True)
        ]
    return pd.Series(repeated, index=mapped.index)


def _is_cancellation(invoice: pd.Series) -> pd.Series:
    return invoice.str.startswith(("C", "c")).fillna(False).astype(bool)


def _line_checks(records: pd.DataFrame) -> list[pd.Series]:
    """Quantities a line cannot have: zero, or negative outside a cancellation invoice."""
    quantity, cancel = records["quantity"], records["cancel"]
    zero = quantity == 0
    negative = (quantity < 0) & ~cancel
    reasons = [pd.Series("quantity: must not be 0", index=records.index[zero.to_numpy()])]
    got = quantity[negative].astype("int64").astype(str)
    reasons.append(
        "quantity: a negative quantity belongs on a cancellation invoice (a number starting "
        "with C), got '" + got + "'"
    )
    return reasons


def _invoice_customer_mismatch(records: pd.DataFrame, state: _FileState) -> pd.Series:
    """Lines whose customer is not their invoice's (the customer of its first line)."""
    first = records.groupby("order")["customer"].transform("first")
    known = records["order"].map(state.invoice_customer)
    first = first.mask(known.notna(), known)
    bad = records["customer"] != first
    new = records.loc[~records["order"].isin(state.invoice_customer.keys())]
    state.invoice_customer.update(new.groupby("order")["customer"].first().to_dict())
    if not bad.any():
        return pd.Series(dtype=object)
    return (
        "customer: invoice '"
        + records.loc[bad, "order"]
        + "' belongs to customer '"
        + first[bad]
        + "' (its first line), got '"
        + records.loc[bad, "customer"]
        + "'"
    )


def _link_customers(
    records: pd.DataFrame, create: bool, summary: LineImportSummary
) -> tuple[pd.DataFrame, pd.Series]:
    """Customer ids for the lines (created first, with their country, when asked)."""
    if create:
        people = records.groupby("customer", sort=False)["country"].first().reset_index()
        people = people.rename(columns={"customer": "external_id"})
        summary.customers_created += bulk_upsert(Customer, people, update=False).created
    link = services.records_link_customers(records=records, create_missing=False)
    unknown = records.loc[link.unknown, "customer"]
    reasons = (
        "customer: unknown customer '"
        + unknown
        + "' (import customers first, or use --create-customers)"
    )
    linked = link.linked
    # reindex: assigning a Series to an empty frame would take the Series' rows.
    return linked.assign(customer=records["customer"].reindex(linked.index)), reasons


def _write(records: pd.DataFrame, state: _FileState, summary: LineImportSummary) -> UpsertCounts:
    """Products, sale lines with their orders, and cancellation lines of one chunk; returns
    the counts of the order lines."""
    if records.empty:
        return UpsertCounts()
    cancel = records["cancel"].astype(bool)
    sales, refunds = records[~cancel], records[cancel]
    lines = UpsertCounts()
    products = services_lines.products_upsert(sales=sales, refunds=refunds)
    summary.products_created += products.created
    summary.products_updated += products.updated
    if not sales.empty:
        written = services_lines.order_lines_write(orders=_orders(sales, state), lines=sales)
        lines = written.lines
        summary.orders_created += written.orders_created
        summary.orders_updated += written.orders_updated
    services_lines.line_refunds_write(
        refunds=pd.DataFrame(
            {
                "external_id": refunds["order"],
                "line_no": refunds["line_no"],
                "customer_id": refunds["customer_id"],
                "product": refunds["product"],
                "quantity": refunds["quantity"].abs(),
                "unit_price": refunds["unit_price"],
                "refunded_at": refunds["placed_at"],
            }
        )
    )
    summary.cancellations += len(refunds)
    state.customers.update(records["customer"].tolist())
    state.orders.update(sales["order"].tolist())
    state.refund_invoices.update(refunds["order"].tolist())
    return lines


def _orders(sales: pd.DataFrame, state: _FileState) -> pd.DataFrame:
    """One row per invoice: customer, currency, and the time of its first line in the file."""
    orders = sales.groupby("order", sort=False).agg(
        customer_id=("customer_id", "first"),
        placed_at=("placed_at", "min"),
        currency=("currency", "first"),
    )
    earlier = orders.index.map(state.invoice_placed)
    known = pd.Series(earlier, index=orders.index).notna().to_numpy()
    for key, stamp in orders["placed_at"][~known].items():
        state.invoice_placed[str(key)] = stamp
    orders["placed_at"] = [state.invoice_placed[str(k)] for k in orders.index]
    return orders.rename_axis("external_id").reset_index()


# 5,000 cancellation invoices per batch: their keys travel as query parameters, well under
# SQLite's limit of 32,766, and one batch's matching stays a short transaction.
REFUND_BATCH = 5_000


def _apply_refunds(state: _FileState, summary: LineImportSummary, currency: str) -> None:
    """Match the file's cancellation lines once every sale line is stored (a cancellation
    may come before its sale in the file)."""
    tables_analyze(Order, OrderLine, LineRefund)
    invoices = sorted(state.refund_invoices)
    for start in range(0, len(invoices), REFUND_BATCH):
        with transaction.atomic():
            applied = services_lines.line_refunds_apply(
                invoices=invoices[start : start + REFUND_BATCH], currency=currency
            )
        summary.cancellations_matched += applied.matched
        summary.cancellations_unmatched += applied.unmatched
        summary.refunded_orders += applied.refunded_orders
        summary.orders_refund_changed += applied.orders_changed


def line_summary_lines(summary: LineImportSummary) -> list[str]:
    """The line-level part of the command's summary."""
    lines = [
        f"  orders {summary.orders:,} (created {summary.orders_created:,} · updated "
        f"{summary.orders_updated:,} · totals changed by cancellations "
        f"{summary.orders_refund_changed:,}) · customers {summary.customers:,} (created "
        f"{summary.customers_created:,})",
        f"  products created {summary.products_created:,} · updated {summary.products_updated:,}",
        f"  cancellation lines {summary.cancellations:,}: matched to the lines they cancel "
        f"{summary.cancellations_matched:,} · unmatched {summary.cancellations_unmatched:,} "
        f"(kept as {summary.refunded_orders:,} refunded orders)",
        f"  lines without a customer id (guests): {summary.guest_lines:,}",
        f"  exact duplicate lines (stored once): {summary.duplicates:,}",
    ]
    lines += [
        f"  line {d['line']} repeats line {d['first_line']}" for d in summary.first_duplicates[:5]
    ]
    return lines


def summary_extra(summary: Any) -> list[str]:
    return line_summary_lines(summary) if isinstance(summary, LineImportSummary) else []
