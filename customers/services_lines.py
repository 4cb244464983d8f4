"""Every state change of products, order lines and cancellation lines (line-level imports).

Order-level columns (amount, item_count, status) of an order with lines are derived from its
lines here, and only here, so scoring and measurement keep reading orders alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd
from django.db.models import (
    DecimalField,
    ExpressionWrapper,
    F,
    IntegerField,
    Max,
    Min,
    OuterRef,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce, Least

from common.db.bulk import UpsertCounts, bulk_upsert, ids_for_keys
from common.db.frames import frame_from_queryset
from customers.models import LineRefund, Order, OrderLine, OrderStatus, Product
from customers.versions import order_state_read, order_versions_record

_MONEY = DecimalField(max_digits=18, decimal_places=3)
_CENTS = Decimal("0.01")


def products_upsert(*, sales: pd.DataFrame, refunds: pd.DataFrame) -> UpsertCounts:
    """Create products and update their name, price and category from the latest sale line.

    `sales`/`refunds`: product (external id), product_name, unit_price, placed_at, category.
    A product's row changes only for a sale later than the one it was last taken from
    (`last_sold_at`), so re-importing a file, or an older one, changes nothing. Products only
    seen in cancellations are created (name and price from that line) but never updated."""
    latest = _latest_per_product(sales)
    counts = _products_from_sales(latest) if len(latest) else UpsertCounts()
    only_refunded = _latest_per_product(refunds).drop(columns="last_sold_at")
    only_refunded = only_refunded[~only_refunded.index.isin(latest.index)]
    only_refunded = only_refunded.assign(
        name=only_refunded["name"]
        .replace("", np.nan)
        .fillna(pd.Series(only_refunded.index, index=only_refunded.index))
    )
    created = bulk_upsert(Product, only_refunded.reset_index(), update=False).created
    return counts + UpsertCounts(created=created, unchanged=len(only_refunded) - created)


def _products_from_sales(latest: pd.DataFrame) -> UpsertCounts:
    """Upsert the products whose latest sale here is later than the one stored."""
    existing = frame_from_queryset(
        Product.objects.filter(external_id__in=latest.index.tolist()).values_list(
            "external_id", "name", "last_sold_at"
        ),
        ["external_id", "name", "last_sold_at"],
    ).set_index("external_id")
    stored_at = pd.to_datetime(existing["last_sold_at"], utc=True).reindex(latest.index)
    newer = latest[stored_at.isna() | (latest["last_sold_at"] > stored_at)]
    # A sale line without a description keeps the stored name (or, for a new product, its id).
    name = newer["name"].fillna(existing["name"].reindex(newer.index)).replace("", np.nan)
    newer = newer.assign(name=name.fillna(pd.Series(newer.index, index=newer.index)))
    counts = bulk_upsert(Product, newer.reset_index())
    return UpsertCounts(
        counts.created, counts.updated, len(latest) - counts.created - counts.updated
    )


def _latest_per_product(lines: pd.DataFrame) -> pd.DataFrame:
    """Per product (index external_id): name (last non-blank), price, category, last_sold_at."""
    columns = ["name", "price", "category", "last_sold_at"]
    if lines.empty:
        return pd.DataFrame(columns=columns, index=pd.Index([], name="external_id"))
    ordered = lines.sort_values("placed_at", kind="stable")
    grouped = ordered.assign(
        product_name=ordered["product_name"].replace("", np.nan),
        category=ordered["category"].replace("", np.nan),
    ).groupby("product", sort=False)
    frame = pd.DataFrame(
        {
            "name": grouped["product_name"].last(),
            "price": grouped["unit_price"].last(),
            "category": grouped["category"].last().fillna(""),
            "last_sold_at": grouped["placed_at"].last(),
        }
    )
    frame.index.name = "external_id"
    return frame


@dataclass(frozen=True)
class LinesWritten:
    lines: UpsertCounts
    orders_created: int
    orders_updated: int


def order_lines_write(*, orders: pd.DataFrame, lines: pd.DataFrame) -> LinesWritten:
    """Write one chunk's sale lines and their orders (call inside a transaction).

    `orders`: external_id, customer_id, placed_at, currency (one row per invoice);
    `lines`: order (external id), line_no, product (external id), quantity, unit_price.
    Lines upsert on (order, line_no); each order's amount, item count and status are then
    derived from all its stored lines (an invoice may span chunks), see `orders_totals_refresh`.
    """
    totals = (
        lines.assign(value=lines["quantity"] * lines["unit_price"])
        .groupby("order")
        .agg(amount=("value", "sum"), item_count=("quantity", "sum"))
    )
    new_orders = orders.join(totals, on="external_id").assign(
        amount=lambda f: f["amount"].round(2), status=OrderStatus.COMPLETED.value
    )
    created = bulk_upsert(Order, new_orders, update=False).created
    order_ids = ids_for_keys(Order, lines["order"]).astype("int64")
    product_ids = ids_for_keys(Product, lines["product"]).astype("int64")
    rows = pd.DataFrame(
        {
            "order_id": order_ids.to_numpy(),
            "line_no": lines["line_no"].to_numpy(),
            "product_id": product_ids.to_numpy(),
            "quantity": lines["quantity"].to_numpy(),
            "unit_price": lines["unit_price"].to_numpy(),
        }
    )
    line_counts = bulk_upsert(OrderLine, rows, key=("order_id", "line_no"))
    identity = orders.assign(id=ids_for_keys(Order, orders["external_id"]).astype("int64"))
    refreshed = orders_totals_refresh(identity=identity)
    return LinesWritten(line_counts, created, refreshed.updated)


def order_lines_set(*, lines: pd.DataFrame) -> UpsertCounts:
    """Replace the lines of existing orders (the API): `lines` has order (external id),
    line_no (1, 2, …), product, product_name, quantity, unit_price. Products are upserted as
    sold at the order's time; lines beyond the new ones are removed; the orders' totals are
    derived again. Call inside a transaction."""
    keys = pd.unique(lines["order"]).tolist()
    identity = _orders_identity(ids_for_keys(Order, pd.Series(keys)).dropna().astype(int).tolist())
    placed = identity.set_index("external_id")["placed_at"]
    stamped = lines.assign(
        placed_at=pd.to_datetime(lines["order"].map(placed), utc=True), category=""
    )
    products_upsert(sales=stamped, refunds=stamped.iloc[:0])
    sizes = lines.groupby("order")["line_no"].max()
    ids = identity.set_index("external_id")["id"]
    for size, orders in sizes.groupby(sizes):  # one delete per distinct number of lines
        OrderLine.objects.filter(
            order_id__in=ids.reindex(orders.index).tolist(), line_no__gt=size
        ).delete()
    return order_lines_write(orders=identity.drop(columns="id"), lines=lines).lines


def orders_totals_refresh(*, identity: pd.DataFrame) -> UpsertCounts:
    """Set amount, item_count and status of orders from their stored lines.

    `identity`: id, external_id, customer_id, placed_at, currency. An order keeps what was not
    refunded: amount = Σ (quantity − refunded) × unit price, items = Σ (quantity − refunded),
    status completed; when every unit was refunded, status refunded with the refunded amount
    and items (as a refunded order of an order-level file reads). Unchanged rows are not
    rewritten."""
    if identity.empty:
        return UpsertCounts()
    kept_units = ExpressionWrapper(F("quantity") - F("refunded_quantity"), IntegerField())
    qs = (
        # order_by(): no Meta ordering, so no join to the orders table (PostgreSQL planned the
        # join against a long IN list as a minutes-long nested loop on a fresh table).
        OrderLine.objects.filter(order_id__in=identity["id"].tolist())
        .order_by()
        .values("order_id")
        .annotate(
            gross=Sum(ExpressionWrapper(F("quantity") * F("unit_price"), _MONEY)),
            kept=Sum(ExpressionWrapper(kept_units * F("unit_price"), _MONEY)),
            units=Sum("quantity"),
            kept_units=Sum(kept_units),
        )
        .values_list("order_id", "gross", "kept", "units", "kept_units")
    )
    sums = frame_from_queryset(qs, ["order_id", "gross", "kept", "units", "kept_units"])
    sums = sums.set_index("order_id")
    refunded = sums["kept_units"] <= 0
    amount = sums["kept"].where(~refunded, sums["gross"]).map(lambda v: Decimal(v).quantize(_CENTS))
    frame = identity.join(
        pd.DataFrame(
            {
                "amount": amount.astype(float),
                "item_count": sums["kept_units"].where(~refunded, sums["units"]).astype("int64"),
                "status": np.where(refunded, OrderStatus.REFUNDED, OrderStatus.COMPLETED),
            },
            index=sums.index,
        ),
        on="id",
        how="inner",
    ).drop(columns="id")
    return bulk_upsert(Order, frame)


def line_refunds_write(*, refunds: pd.DataFrame) -> UpsertCounts:
    """Store one chunk's cancellation lines, unmatched (call inside a transaction).

    `refunds`: external_id (the cancellation invoice), line_no, customer_id, product,
    quantity (units given back, positive), unit_price, refunded_at."""
    if refunds.empty:
        return UpsertCounts()
    product_ids = ids_for_keys(Product, refunds["product"]).astype("int64")
    rows = refunds.drop(columns="product").assign(product_id=product_ids.to_numpy())
    return bulk_upsert(LineRefund, rows, key=("external_id", "line_no"))


@dataclass(frozen=True)
class RefundsApplied:
    matched: int  # cancellation lines matched to an order line
    unmatched: int  # cancellation lines kept as refunded orders
    refunded_orders: int  # those refunded orders (one per cancellation invoice)
    orders_changed: int  # orders whose amount, items or status the refunds changed


def line_refunds_apply(*, invoices: list[str], currency: str) -> RefundsApplied:
    """Match the cancellation lines of `invoices` to the order lines they cancel and refund them.

    A cancellation line matches the customer's most recent order line of the same product
    placed no later than the cancellation. The matched line's `refunded_quantity` is the sum
    of its cancellations (at most its quantity), and its order's totals are derived again. The
    lines left unmatched (the purchase predates the data) make one refunded order per
    cancellation invoice. Running it twice changes nothing. Call inside a transaction."""
    if not invoices:
        return RefundsApplied(0, 0, 0, 0)
    mine = LineRefund.objects.filter(external_id__in=invoices)
    candidates = OrderLine.objects.filter(
        order__customer_id=OuterRef("customer_id"),
        product_id=OuterRef("product_id"),
        order__placed_at__lte=OuterRef("refunded_at"),
    ).order_by("-order__placed_at", "-pk")
    mine.filter(line__isnull=True).update(line=Subquery(candidates.values("pk")[:1]))
    refunded_units = (
        LineRefund.objects.filter(line_id=OuterRef("pk"))
        .values("line_id")
        .annotate(units=Sum("quantity"))
        .values("units")
    )
    new_refunded = Least(F("quantity"), Coalesce(Subquery(refunded_units), 0))
    line_ids = list(
        mine.filter(line__isnull=False).order_by().values_list("line_id", flat=True).distinct()
    )
    lines = OrderLine.objects.filter(pk__in=line_ids)
    order_ids = list(lines.order_by().values_list("order_id", flat=True).distinct())
    lines.annotate(new=new_refunded).exclude(refunded_quantity=F("new")).update(
        refunded_quantity=new_refunded
    )
    identity = _orders_identity(order_ids)
    before = order_state_read(ids=order_ids)
    changed = orders_totals_refresh(identity=identity).updated
    # The state before these refunds held until the latest of them (never earlier: a refund
    # after a cutoff must not reach features as of that cutoff).
    latest = (
        mine.filter(line__isnull=False)
        .order_by()
        .values("line__order_id")
        .annotate(at=Max("refunded_at"))
        .values_list("line__order_id", "at")
    )
    order_versions_record(
        before=before, valid_until=pd.Series(dict(latest), dtype="datetime64[ns, UTC]")
    )
    refunded_orders = _unmatched_refunds_as_orders(invoices=invoices, currency=currency)
    matched = mine.filter(line__isnull=False).count()
    return RefundsApplied(matched, mine.count() - matched, refunded_orders, changed)


def _orders_identity(order_ids: list[int]) -> pd.DataFrame:
    columns = ["id", "external_id", "customer_id", "placed_at", "currency"]
    if not order_ids:
        return pd.DataFrame(columns=columns)
    return frame_from_queryset(
        Order.objects.filter(pk__in=order_ids).values_list(*columns), columns
    )


def _unmatched_refunds_as_orders(*, invoices: list[str], currency: str) -> int:
    """One refunded order per cancellation invoice with unmatched lines (amount and items of
    those lines); an invoice all of whose lines now match loses its refunded order."""
    value = ExpressionWrapper(F("quantity") * F("unit_price"), _MONEY)
    qs = (
        LineRefund.objects.filter(external_id__in=invoices, line__isnull=True)
        .values("external_id")
        .annotate(
            customer=Min("customer_id"),
            placed=Min("refunded_at"),
            amount=Sum(value),
            items=Sum("quantity"),
        )
        .values_list("external_id", "customer", "placed", "amount", "items")
    )
    frame = frame_from_queryset(
        qs, ["external_id", "customer_id", "placed_at", "amount", "item_count"]
    )
    frame["amount"] = frame["amount"].map(lambda v: float(Decimal(v).quantize(_CENTS)))
    frame = frame.assign(status=OrderStatus.REFUNDED.value, currency=currency)
    bulk_upsert(Order, frame)
    all_matched = sorted(set(invoices) - set(frame["external_id"]))
    Order.objects.filter(external_id__in=all_matched, lines__isnull=True).delete()
    return len(frame)
