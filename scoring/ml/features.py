"""Feature tables for the churn model: event data as of a date, and snapshot tables.

Pure pandas/numpy. The builders return a DataFrame indexed by customer id whose numeric
columns are float32 and whose categorical columns are strings (object dtype, NaN = missing);
`infer_feature_spec` turns that into a `FeatureSpec`, from which `pipelines.build_pipeline`
assembles the model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from scoring.ml import btyd

WINDOWS_ORDERS = (30, 90, 365)
WINDOWS_EVENTS = (30, 90)
MISSING_CATEGORY = "__missing__"
_NS_PER_DAY = 86_400 * 10**9
# Look-ahead of the BG/NBD columns expected_orders_<h>d / p_no_order_<h>d.
BTYD_HORIZON_DAYS = 180

# A column whose non-blank values parse as numbers at least this often is numeric; the rest
# of its values (e.g. telco TotalCharges " ") become NaN and are imputed in the pipeline.
NUMERIC_STRING_SHARE = 0.95


@dataclass(frozen=True)
class FeatureSpec:
    """Which input columns the model uses and how the pipeline treats them."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    def to_dict(self) -> dict[str, list[str]]:
        return {"numeric": list(self.numeric), "categorical": list(self.categorical)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[str]]) -> FeatureSpec:
        return cls(numeric=tuple(data["numeric"]), categorical=tuple(data["categorical"]))


def _slug(name: object) -> str:
    text = re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower()
    return text or "unknown"


def as_utc(value: pd.Timestamp | date | datetime | str) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def utc_ns(series: pd.Series) -> np.ndarray:
    """int64 nanoseconds since epoch (UTC); NaT becomes the int64 minimum."""
    values = pd.to_datetime(series, utc=True)
    return values.astype("datetime64[ns, UTC]").array.asi8  # type: ignore[attr-defined]


def _positions(index: pd.Index, ids: pd.Series) -> np.ndarray:
    """Row position of each id in `index` (-1 for ids that are not customers)."""
    return np.asarray(index.get_indexer(ids), dtype=np.int64)


def _div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def build_features(
    *,
    orders: pd.DataFrame,
    events: pd.DataFrame,
    customers: pd.DataFrame,
    as_of: pd.Timestamp | date | datetime,
    event_kinds: Iterable[str] | None = None,
    btyd_params: btyd.BgNbdParams | Mapping[str, Any] | None = None,
    order_versions: pd.DataFrame | None = None,
    attribute_versions: pd.DataFrame | None = None,
    statistics: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Features for every customer in `customers` from orders/events strictly before `as_of`.

    Strictly as of the cutoff: `order_versions` (order_id, valid_until, amount, status,
    discount_amount, item_count) and `attribute_versions` (customer_id, valid_until,
    attributes) hold earlier states; an order or a customer changed at or after `as_of` is
    read as it was before the change (`orders_as_of`, `attributes_as_of`), so a refund or an
    attribute update after the cutoff changes no feature.

    Orders: customer_id, placed_at, amount, status, discount_amount, item_count.
    Events: customer_id, kind, occurred_at. Customers: customer_id, signup_date, attributes.
    `event_kinds` fixes the event columns (pass the training kinds when scoring); by default
    the kinds seen before `as_of` are used.

    Definitions (days are fractional, float32 unless noted):
    - recency_days: days since the last *completed* order (NaN if none).
    - orders_{30,90,365}d / revenue_{30,90,365}d: completed orders and their amount.
    - orders_lifetime, revenue_lifetime, avg_order_value (completed orders only).
    - tenure_days: since signup_date, or since the first order of any status when unknown.
    - interorder_mean_days / interorder_std_days: gaps between consecutive completed orders
      (population std; NaN with fewer than two / three orders).
    - revenue_trend_90d = log1p(revenue last 90 days) - log1p(revenue in the 90 days before):
      a symmetric log ratio, defined when both windows are empty (0) and robust to outliers.
    - refund_share: refunded orders / all orders; cancel_share likewise.
    - discount_share: discount / (amount + discount) over completed orders.
    - event_<kind>_{30,90}d counts, days_since_event_<kind> (NaN if never).
    - attr_<name>: customer attributes; JSON numbers are numeric, strings/bools categorical.
    - p_alive, expected_orders_180d, p_no_order_180d: BG/NBD model (`scoring.ml.btyd`) on
      completed orders (same-day orders = one purchase occasion). p_alive is 1 for customers
      without a repeat occasion (the model's definition); NaN without a completed order.
      `btyd_params` (BgNbdParams or its dict) fixes the model parameters; by default they
      are fitted, without labels, on the customers passed in and their orders before `as_of`.
      The parameters used are returned in `frame.attrs["btyd_params"]`: store them with the
      model and pass them back when scoring in chunks, so every chunk shares one model.

    `statistics` (`order_statistics` of every customer, valid as of `as_of`) replaces the
    orders: a scoring run passes the statistics kept since last night merged with those of
    the customers whose orders it read. Without it they are computed from `orders`.
    """
    now = as_utc(as_of).value
    customers = attributes_as_of(customers=customers, versions=attribute_versions, as_of=as_of)
    index = pd.Index(customers["customer_id"], name="customer_id")
    if index.has_duplicates:
        raise ValueError("customers contains duplicate customer_id values")
    if statistics is None:
        orders = orders_as_of(orders=orders, versions=order_versions, as_of=as_of)
        statistics = order_statistics(orders=orders, index=index, as_of=as_of)
    elif not index.isin(statistics.index).all():
        raise ValueError("statistics lacks some of the customers")
    else:
        statistics = statistics.reindex(index)
    cols = _order_features(statistics, now=now)
    cols["tenure_days"] = _tenure_days(customers=customers, statistics=statistics, now=now)
    btyd_cols, params = _btyd_features(statistics=statistics, now=now, btyd_params=btyd_params)
    cols.update(btyd_cols)
    cols.update(_event_features(events=events, index=index, now=now, event_kinds=event_kinds))

    frame = pd.DataFrame({k: v.astype(np.float32) for k, v in cols.items()}, index=index)
    if "attributes" in customers:
        frame = pd.concat([frame, _attribute_frame(customers["attributes"], index)], axis=1)
    frame.attrs["btyd_params"] = asdict(params)
    return frame


def _earliest_valid(
    versions: pd.DataFrame | None, key: str, as_of: pd.Timestamp | date | datetime
) -> pd.DataFrame | None:
    """Per `key`, the earliest version still valid at `as_of` (valid_until >= as_of: a
    change at the cutoff itself is not before it); None when there is none."""
    if versions is None or versions.empty:
        return None
    until = utc_ns(versions["valid_until"])
    valid = versions[until >= as_utc(as_of).value]
    if valid.empty:
        return None
    order = np.lexsort((utc_ns(valid["valid_until"]), valid[key].to_numpy()))
    return valid.iloc[order].drop_duplicates(subset=key, keep="first")


def orders_as_of(
    *,
    orders: pd.DataFrame,
    versions: pd.DataFrame | None,
    as_of: pd.Timestamp | date | datetime,
) -> pd.DataFrame:
    """`orders` with amount, status, discount_amount and item_count as they were just before
    `as_of`: each order changed at or after it takes its earliest version valid then."""
    earliest = _earliest_valid(versions, "order_id", as_of)
    if earliest is None or "order_id" not in orders:
        return orders
    pos = pd.Index(orders["order_id"]).get_indexer(earliest["order_id"])
    found = pos >= 0
    pos, earliest = pos[found], earliest[found]
    out = orders.copy()
    for column in ("amount", "discount_amount", "item_count"):
        values = out[column].to_numpy(dtype=np.float64, copy=True)
        values[pos] = earliest[column].to_numpy(dtype=np.float64)
        out[column] = values
    status = out["status"].astype(str).to_numpy(dtype=object, copy=True)
    status[pos] = earliest["status"].astype(str).to_numpy(dtype=object)
    out["status"] = status
    return out


def attributes_as_of(
    *,
    customers: pd.DataFrame,
    versions: pd.DataFrame | None,
    as_of: pd.Timestamp | date | datetime,
) -> pd.DataFrame:
    """`customers` with the attributes they had just before `as_of` (the earliest version
    valid then; the current attributes when none is)."""
    earliest = _earliest_valid(versions, "customer_id", as_of)
    if earliest is None or "attributes" not in customers:
        return customers
    earlier = dict(zip(earliest["customer_id"].tolist(), earliest["attributes"].tolist()))
    attributes = [
        earlier.get(cid, attrs)
        for cid, attrs in zip(
            customers["customer_id"].tolist(), customers["attributes"].tolist(), strict=True
        )
    ]
    return customers.assign(attributes=pd.Series(attributes, index=customers.index, dtype=object))


# Order statistics: what the order features need of a customer's orders before a date, one
# row per customer (`order_statistics`), from which the features follow for that date and any
# later one until `valid_until_ns` (`_order_features`). Scoring keeps them between nights
# (scoring.models.OrderStatistics) and reads orders only for the customers whose statistics
# are stale; both paths go through these two functions, so the features are the same.
_NO_TIME = np.iinfo(np.int64).min  # no such order
_NO_EDGE = np.iinfo(np.int64).max  # nothing changes the statistics with time
# Window edges in days: where a completed order enters or leaves a window of the features
# (the 90 days before the last 90 of revenue_trend_90d end at 180).
_EDGE_DAYS = tuple(sorted({*WINDOWS_ORDERS, 90, 180}))

STATISTIC_COLUMNS = (
    "basis_ns",
    "valid_until_ns",
    "orders_all",
    "orders_refunded",
    "orders_cancelled",
    "orders_completed",
    "revenue",
    "items",
    "discount",
    "gross",
    *(f"{kind}_{w}d" for w in WINDOWS_ORDERS for kind in ("orders", "revenue")),
    "revenue_prev_90d",
    "first_order_ns",
    "first_completed_ns",
    "last_completed_ns",
    "occasions",
    "gaps",
    "gap_sum",
    "gap_sq",
)


def order_statistics(
    *, orders: pd.DataFrame, index: pd.Index, as_of: pd.Timestamp | date | datetime
) -> pd.DataFrame:
    """Per customer of `index`, the statistics of their orders placed before `as_of`.

    Counts and sums (completed orders unless named otherwise; `gross` = amount + discount),
    the window counts and sums as of `as_of` (an order is in a window of w days when it was
    placed less than w days before, counted in nanoseconds), the first order of any status,
    the first and last completed order, the purchase occasions (completed orders on distinct
    UTC days) and the gaps between consecutive completed orders (count, sum, sum of squares,
    in days). `basis_ns` is `as_of`; `valid_until_ns` the first moment after it at which
    these numbers change with time alone — a completed order crossing a window edge, or an
    order placed at or after `as_of` becoming one before the date: for any date d with
    basis ≤ d < valid_until and the same orders, `order_statistics` would return the same
    row (times in nanoseconds since the epoch, UTC).
    """
    now = as_utc(as_of).value
    n = len(index)
    placed = utc_ns(orders["placed_at"]) if len(orders) else np.zeros(0, dtype=np.int64)
    pos = _positions(index, orders["customer_id"]) if len(orders) else np.zeros(0, np.int64)
    known = (pos >= 0) & (placed != _NO_TIME)
    keep = known & (placed < now)
    later = placed[known & (placed >= now)]
    later_pos = pos[known & (placed >= now)]
    pos, placed = pos[keep], placed[keep]
    status = status_lower(orders["status"])[keep] if len(orders) else np.zeros(0, dtype=object)
    completed = status == "completed"
    amount = _column(orders, "amount", keep)
    discount = _column(orders, "discount_amount", keep)

    def count(mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        w = None if weights is None else weights[mask]
        return np.bincount(pos[mask], weights=w, minlength=n).astype(np.float64)

    age = now - placed  # nanoseconds, > 0
    out: dict[str, np.ndarray] = {
        "basis_ns": np.full(n, now, dtype=np.int64),
        "orders_all": count(np.ones_like(completed)),
        "orders_refunded": count(status == "refunded"),
        "orders_cancelled": count(status == "cancelled"),
        "orders_completed": count(completed),
        "revenue": count(completed, amount),
        "items": count(completed, _column(orders, "item_count", keep)),
        "discount": count(completed, discount),
        "gross": count(completed, amount + discount),
    }
    for window in WINDOWS_ORDERS:
        in_window = completed & (age < window * _NS_PER_DAY)
        out[f"orders_{window}d"] = count(in_window)
        out[f"revenue_{window}d"] = count(in_window, amount)
    prev = completed & (age >= 90 * _NS_PER_DAY) & (age < 180 * _NS_PER_DAY)
    out["revenue_prev_90d"] = count(prev, amount)

    cpos, cplaced = pos[completed], placed[completed]
    # Per customer, oldest first. A scoring chunk's orders come from the (customer, time)
    # index in that order already: checked in a millisecond, the sort (0.1–0.3 s a chunk of
    # 500,000 orders) is skipped — the stable sort would have left them as they are.
    in_order = (cpos[1:] > cpos[:-1]) | ((cpos[1:] == cpos[:-1]) & (cplaced[1:] >= cplaced[:-1]))
    if not in_order.all():
        order = np.lexsort((cplaced, cpos))
        cpos, cplaced = cpos[order], cplaced[order]
    out["first_order_ns"] = _time_per(pos, placed, n, np.minimum)
    out["first_completed_ns"] = _time_per(cpos, cplaced, n, np.minimum)
    out["last_completed_ns"] = _time_per(cpos, cplaced, n, np.maximum)
    out["occasions"] = btyd.occasions(positions=cpos, placed_ns=cplaced, n_customers=n)
    same = cpos[1:] == cpos[:-1]
    gaps = (cplaced[1:] - cplaced[:-1])[same] / _NS_PER_DAY
    gap_pos = cpos[1:][same]
    out["gaps"] = np.bincount(gap_pos, minlength=n).astype(np.float64)
    out["gap_sum"] = np.bincount(gap_pos, weights=gaps, minlength=n)
    out["gap_sq"] = np.bincount(gap_pos, weights=gaps * gaps, minlength=n)

    # The next edge each completed order crosses, and the orders still ahead of the date.
    cage = now - cplaced
    edges = np.full(cage.shape, _NO_EDGE, dtype=np.int64)
    for days in reversed(_EDGE_DAYS):
        edge = days * _NS_PER_DAY
        edges = np.where(cage < edge, cplaced + edge, edges)
    until = np.full(n, _NO_EDGE, dtype=np.int64)
    np.minimum.at(until, cpos, edges)
    np.minimum.at(until, later_pos, later)
    out["valid_until_ns"] = until
    return pd.DataFrame({c: out[c] for c in STATISTIC_COLUMNS}, index=index)


def _column(orders: pd.DataFrame, name: str, keep: np.ndarray) -> np.ndarray:
    if not len(orders):
        return np.zeros(0)
    return orders[name].to_numpy(dtype=np.float64, na_value=0.0)[keep]


def _time_per(pos: np.ndarray, placed: np.ndarray, n: int, pick: np.ufunc) -> np.ndarray:
    """Per customer the earliest (np.minimum) or latest (np.maximum) time; _NO_TIME if none."""
    start = _NO_EDGE if pick is np.minimum else _NO_TIME
    out = np.full(n, start, dtype=np.int64)
    pick.at(out, pos, placed)
    out[out == _NO_EDGE] = _NO_TIME
    return out


def merge_statistics(computed: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """`computed` (every customer) with the rows of the customers in `stored` taken from it."""
    if stored.empty:
        return computed
    out = computed.copy()
    rows = out.index.get_indexer(stored.index)
    found = rows >= 0
    for column in STATISTIC_COLUMNS:
        values = out[column].to_numpy(copy=True)
        values[rows[found]] = stored[column].to_numpy()[found]
        out[column] = values
    return out


def status_lower(status: pd.Series) -> np.ndarray:
    """`status.astype(str).str.lower()` as an array; for a categorical (as scoring reads the
    statuses) lowered once per category instead of once per order (~2 s a 1M-customer run)."""
    categorical = isinstance(status.dtype, pd.CategoricalDtype)
    if categorical and pd.api.types.is_string_dtype(status.cat.categories.dtype):
        lowered = status.cat.categories.astype(str).str.lower().tolist()
        return np.asarray([*lowered, np.nan], dtype=object)[status.cat.codes.to_numpy()]
    return status.astype(str).str.lower().to_numpy()


def _days_since(now: int, times: np.ndarray) -> np.ndarray:
    """(now - time) in days; NaN where there is no such time."""
    out = (now - times) / _NS_PER_DAY
    return np.where(times == _NO_TIME, np.nan, out)


def _order_features(statistics: pd.DataFrame, *, now: int) -> dict[str, np.ndarray]:
    """Counts, spend, recency, ordering rhythm and shares (see `build_features`), in the
    order the columns appear, from the customers' order statistics."""
    s = {c: statistics[c].to_numpy() for c in STATISTIC_COLUMNS}
    cols: dict[str, np.ndarray] = {}
    for window in WINDOWS_ORDERS:
        cols[f"orders_{window}d"] = s[f"orders_{window}d"]
        cols[f"revenue_{window}d"] = s[f"revenue_{window}d"]
    n_completed = s["orders_completed"]
    cols["orders_lifetime"] = n_completed
    cols["revenue_lifetime"] = s["revenue"]
    cols["avg_order_value"] = _div(s["revenue"], n_completed)
    cols["items_per_order"] = _div(s["items"], n_completed)
    cols["recency_days"] = _days_since(now, s["last_completed_ns"])
    gap_mean = _div(s["gap_sum"], s["gaps"])
    var = _div(s["gap_sq"], s["gaps"]) - gap_mean**2
    cols["interorder_mean_days"] = gap_mean
    cols["interorder_std_days"] = np.where(s["gaps"] >= 2, np.sqrt(np.clip(var, 0, None)), np.nan)
    cols["revenue_trend_90d"] = np.log1p(np.clip(cols["revenue_90d"], 0, None)) - np.log1p(
        np.clip(s["revenue_prev_90d"], 0, None)
    )
    cols["refund_share"] = _div(s["orders_refunded"], s["orders_all"])
    cols["cancel_share"] = _div(s["orders_cancelled"], s["orders_all"])
    cols["discount_share"] = _div(s["discount"], s["gross"])
    return cols


def _tenure_days(*, customers: pd.DataFrame, statistics: pd.DataFrame, now: int) -> np.ndarray:
    """Days since signup, or since the first order of any status when the signup is unknown."""
    tenure = _days_since(now, statistics["first_order_ns"].to_numpy())
    if "signup_date" in customers:
        signup = utc_ns(customers["signup_date"])
        has_signup = (signup != _NO_TIME) & (signup < now)
        tenure = np.where(has_signup, (now - signup) / _NS_PER_DAY, tenure)
    return tenure


def _btyd_features(
    *,
    statistics: pd.DataFrame,
    now: int,
    btyd_params: btyd.BgNbdParams | Mapping[str, Any] | None,
) -> tuple[dict[str, np.ndarray], btyd.BgNbdParams]:
    """BG/NBD ("buy 'til you die") columns on completed orders, and the parameters used
    (fitted on these customers unless given)."""
    bx, btx, bT = btyd.summary_from_statistics(
        occasions=statistics["occasions"].to_numpy(),
        first_ns=statistics["first_completed_ns"].to_numpy(),
        last_ns=statistics["last_completed_ns"].to_numpy(),
        now_ns=now,
    )
    if btyd_params is None:
        params = btyd.fit_bgnbd(bx, btx, bT)
    elif isinstance(btyd_params, btyd.BgNbdParams):
        params = btyd_params
    else:
        params = btyd.BgNbdParams.from_dict(btyd_params)
    h = BTYD_HORIZON_DAYS
    return {
        "p_alive": btyd.p_alive(params, bx, btx, bT),
        f"expected_orders_{h}d": btyd.expected_purchases(params, h, bx, btx, bT),
        f"p_no_order_{h}d": btyd.p_no_purchase(params, h, bx, btx, bT),
    }, params


def _event_features(
    *, events: pd.DataFrame, index: pd.Index, now: int, event_kinds: Iterable[str] | None
) -> dict[str, np.ndarray]:
    n = len(index)
    occurred = utc_ns(events["occurred_at"])
    pos = _positions(index, events["customer_id"])
    keep = (occurred < now) & (pos >= 0) & (occurred != np.iinfo(np.int64).min)
    kind_slug = events["kind"].astype(str).map(_slug).to_numpy()[keep]
    pos, occurred = pos[keep], occurred[keep]
    kinds = sorted(set(kind_slug)) if event_kinds is None else [_slug(k) for k in event_kinds]
    kind_codes = pd.Index(kinds, dtype=object).get_indexer(kind_slug).astype(np.int64)
    known = kind_codes >= 0
    pos, occurred, kind_codes = pos[known], occurred[known], kind_codes[known]
    n_kinds = len(kinds)
    age_days = (now - occurred) / _NS_PER_DAY
    flat = pos * n_kinds + kind_codes
    out: dict[str, np.ndarray] = {}
    counts = {
        w: np.bincount(flat[age_days < w], minlength=n * n_kinds).reshape(n, n_kinds)
        for w in WINDOWS_EVENTS
    }
    last_flat = np.full(n * n_kinds, np.nan)
    if flat.size:
        np.fmin.at(last_flat, flat, age_days)
    last = last_flat.reshape(n, n_kinds)
    for k, kind in enumerate(kinds):
        for w in WINDOWS_EVENTS:
            out[f"event_{kind}_{w}d"] = counts[w][:, k].astype(np.float64)
        out[f"days_since_event_{kind}"] = last[:, k]
    return out


_NO_ATTRIBUTES: dict[str, Any] = {}


def _attribute_frame(attributes: pd.Series, index: pd.Index) -> pd.DataFrame:
    records = [a if isinstance(a, dict) else _NO_ATTRIBUTES for a in attributes.tolist()]
    raw, rows = _records_frame(records)
    # Each column is typed on the distinct records (a few hundred per 50,000 customers), then
    # spread to the rows: a conversion a row cost 35 ms a chunk of 50,000.
    data: dict[str, np.ndarray] = {}
    for name in raw.columns:
        col = raw[name]
        column = f"attr_{_slug(name)}"
        if column in data:
            continue
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            # Numbers only (no bool), judged per type present rather than per value.
            kinds = set(map(type, col.dropna().tolist()))
            numeric = bool(kinds) and all(
                issubclass(k, (int, float, np.number)) and not issubclass(k, bool) for k in kinds
            )
        else:
            numeric = True
        if numeric:
            values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float32)
        else:
            values = _as_category_strings(col).to_numpy(dtype=object)
        data[column] = values if rows is None else values[rows]
    return pd.DataFrame(data, index=index)


def _records_frame(records: list[dict[str, Any]]) -> tuple[pd.DataFrame, np.ndarray | None]:
    """`DataFrame.from_records(records)` as its distinct rows and each record's row of them
    (None: one row per record). Customers with the same attributes share one parsed dict
    (customers.selectors), a few hundred for 50,000 customers, and from_records cost ~1 µs a
    row (1.7 s of a 1M-customer run). The distinct dicts in order of first appearance give
    the same columns, in the same order, with the same inferred types."""
    if not records:
        return pd.DataFrame(), None
    codes, distinct_ids = pd.factorize(np.fromiter(map(id, records), np.int64, len(records)))
    if len(distinct_ids) == len(records):
        return pd.DataFrame.from_records(records), None
    _, first = np.unique(codes, return_index=True)  # codes number the dicts as they appear
    return pd.DataFrame.from_records([records[i] for i in first.tolist()]), codes


def _as_category_strings(col: pd.Series) -> pd.Series:
    """Strings (object dtype, NaN for missing); bools become 'true'/'false' like JSON."""

    def convert(v: Any) -> Any:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return np.nan
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)

    if set(map(type, col.tolist())) <= {str, type(None)}:  # the usual case, without a call a row
        return col.astype(object).where(col.notna(), np.nan)
    return col.map(convert).astype(object)


def build_snapshot_features(
    *,
    table: pd.DataFrame,
    id_column: str | None = None,
    label_column: str | None = None,
    drop: Sequence[str] = (),
) -> pd.DataFrame:
    """Features from a one-row-per-customer table (e.g. the telco CSV).

    Numeric columns stay numeric (float32 except the label is dropped), strings become
    categorical strings, and string columns whose non-blank values are mostly numbers
    (telco TotalCharges with " " blanks) are coerced to numbers with NaN for the rest.
    """
    frame = table.copy()
    if id_column is not None:
        frame = frame.set_index(id_column)
    to_drop = [c for c in (*drop, label_column) if c is not None and c in frame.columns]
    frame = frame.drop(columns=to_drop)
    out: dict[str, pd.Series] = {}
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_bool_dtype(col):
            out[name] = _as_category_strings(col)
        elif pd.api.types.is_numeric_dtype(col):
            out[name] = col.astype(np.float32)
        else:
            stripped = col.astype(object).where(col.notna(), None)
            text = stripped.map(lambda v: v.strip() if isinstance(v, str) else v)
            non_blank = text.replace("", np.nan).dropna()
            parsed = pd.to_numeric(non_blank, errors="coerce")
            if len(non_blank) and parsed.notna().mean() >= NUMERIC_STRING_SHARE:
                out[name] = pd.to_numeric(text, errors="coerce").astype(np.float32)
            else:
                out[name] = _as_category_strings(text)
    return pd.DataFrame(out, index=frame.index)


def infer_feature_spec(*, features: pd.DataFrame, exclude: Sequence[str] = ()) -> FeatureSpec:
    """Numeric dtypes are numeric features; everything else (strings) is categorical."""
    numeric: list[str] = []
    categorical: list[str] = []
    for name in features.columns:
        if name in exclude:
            continue
        col = features[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            numeric.append(str(name))
        else:
            categorical.append(str(name))
    return FeatureSpec(numeric=tuple(numeric), categorical=tuple(categorical))


def align_features(*, features: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Columns of `spec` in order: missing event counts become 0, other missing columns NaN.

    Use at scoring time so a model trained on one set of event kinds / attributes scores a
    frame that lacks some of them or has extra ones.
    """
    data: dict[str, pd.Series] = {}
    for name in spec.numeric:
        if name in features:
            data[name] = pd.to_numeric(features[name], errors="coerce").astype(np.float32)
        else:
            fill = 0.0 if re.fullmatch(r"event_.+_\d+d", name) else np.nan
            data[name] = pd.Series(fill, index=features.index, dtype=np.float32)
    for name in spec.categorical:
        if name in features:
            data[name] = _as_category_strings(features[name])
        else:
            data[name] = pd.Series(np.nan, index=features.index, dtype=object)
    return pd.DataFrame(data, index=features.index)
