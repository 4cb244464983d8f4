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
    """
    now = as_utc(as_of).value
    orders = orders_as_of(orders=orders, versions=order_versions, as_of=as_of)
    customers = attributes_as_of(customers=customers, versions=attribute_versions, as_of=as_of)
    index = pd.Index(customers["customer_id"], name="customer_id")
    if index.has_duplicates:
        raise ValueError("customers contains duplicate customer_id values")
    placed = _orders_before(orders=orders, index=index, now=now)
    cols = _order_features(placed)
    cols["tenure_days"] = _tenure_days(customers=customers, orders=placed, now=now)
    btyd_cols, params = _btyd_features(orders=placed, now=now, btyd_params=btyd_params)
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


@dataclass(frozen=True)
class _PlacedOrders:
    """The orders placed before the cutoff by the customers being featurised, as arrays with
    one entry per order; `n` customers, `pos` each order's customer row."""

    n: int
    pos: np.ndarray
    placed: np.ndarray  # nanoseconds since the epoch (UTC)
    age_days: np.ndarray  # days before the cutoff
    amount: np.ndarray
    discount: np.ndarray
    items: np.ndarray
    status: np.ndarray  # lower-case
    completed: np.ndarray

    def count(self, mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Per customer: the orders in `mask`, or the sum of their `weights`."""
        w = None if weights is None else weights[mask]
        return np.bincount(self.pos[mask], weights=w, minlength=self.n).astype(np.float64)


def status_lower(status: pd.Series) -> np.ndarray:
    """`status.astype(str).str.lower()` as an array; for a categorical (as scoring reads the
    statuses) lowered once per category instead of once per order (~2 s a 1M-customer run)."""
    categorical = isinstance(status.dtype, pd.CategoricalDtype)
    if categorical and pd.api.types.is_string_dtype(status.cat.categories.dtype):
        lowered = status.cat.categories.astype(str).str.lower().tolist()
        return np.asarray([*lowered, np.nan], dtype=object)[status.cat.codes.to_numpy()]
    return status.astype(str).str.lower().to_numpy()


def _orders_before(*, orders: pd.DataFrame, index: pd.Index, now: int) -> _PlacedOrders:
    placed = utc_ns(orders["placed_at"])
    pos = _positions(index, orders["customer_id"])
    keep = (placed < now) & (pos >= 0) & (placed != np.iinfo(np.int64).min)
    pos, placed = pos[keep], placed[keep]
    status = status_lower(orders["status"])[keep]
    return _PlacedOrders(
        n=len(index),
        pos=pos,
        placed=placed,
        age_days=(now - placed) / _NS_PER_DAY,
        amount=orders["amount"].to_numpy(dtype=np.float64, na_value=0.0)[keep],
        discount=orders["discount_amount"].to_numpy(dtype=np.float64, na_value=0.0)[keep],
        items=orders["item_count"].to_numpy(dtype=np.float64, na_value=0.0)[keep],
        status=status,
        completed=status == "completed",
    )


def _order_features(orders: _PlacedOrders) -> dict[str, np.ndarray]:
    """Counts, spend, recency, ordering rhythm and shares (see `build_features`), in the
    order the columns appear."""
    o, completed = orders, orders.completed
    cols: dict[str, np.ndarray] = {}
    n_completed = o.count(completed)
    revenue = o.count(completed, o.amount)
    for window in WINDOWS_ORDERS:
        in_window = completed & (o.age_days < window)
        cols[f"orders_{window}d"] = o.count(in_window)
        cols[f"revenue_{window}d"] = o.count(in_window, o.amount)
    cols["orders_lifetime"] = n_completed
    cols["revenue_lifetime"] = revenue
    cols["avg_order_value"] = _div(revenue, n_completed)
    cols["items_per_order"] = _div(o.count(completed, o.items), n_completed)

    last_completed = np.full(o.n, np.nan)
    if o.pos.size:
        # Ages are >= 0, so min age = most recent order; fmin ignores the NaN start.
        np.fmin.at(last_completed, o.pos[completed], o.age_days[completed])
    cols["recency_days"] = last_completed
    cols["interorder_mean_days"], cols["interorder_std_days"] = _interorder_gaps(o)

    prev_window = completed & (o.age_days >= 90) & (o.age_days < 180)
    cols["revenue_trend_90d"] = np.log1p(np.clip(cols["revenue_90d"], 0, None)) - np.log1p(
        np.clip(o.count(prev_window, o.amount), 0, None)
    )
    n_all = o.count(np.ones_like(completed))
    cols["refund_share"] = _div(o.count(o.status == "refunded"), n_all)
    cols["cancel_share"] = _div(o.count(o.status == "cancelled"), n_all)
    cols["discount_share"] = _div(
        o.count(completed, o.discount), o.count(completed, o.amount + o.discount)
    )
    return cols


def _interorder_gaps(orders: _PlacedOrders) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std of the gaps between consecutive completed orders of each
    customer (NaN with fewer than two / three orders), via one sort."""
    cpos, cage = orders.pos[orders.completed], orders.age_days[orders.completed]
    # Per customer, oldest first. A scoring chunk's orders come from the (customer, time)
    # index in that order already: checked in a millisecond, the sort (0.1–0.3 s a chunk of
    # 500,000 orders) is skipped — the stable sort would have left them as they are.
    in_order = (cpos[1:] > cpos[:-1]) | ((cpos[1:] == cpos[:-1]) & (cage[1:] <= cage[:-1]))
    if not in_order.all():
        order = np.lexsort((-cage, cpos))
        cpos, cage = cpos[order], cage[order]
    same = cpos[1:] == cpos[:-1]
    gaps = (cage[:-1] - cage[1:])[same]
    gap_pos = cpos[1:][same]
    n_gaps = np.bincount(gap_pos, minlength=orders.n).astype(np.float64)
    gap_sum = np.bincount(gap_pos, weights=gaps, minlength=orders.n)
    gap_sq = np.bincount(gap_pos, weights=gaps * gaps, minlength=orders.n)
    gap_mean = _div(gap_sum, n_gaps)
    var = _div(gap_sq, n_gaps) - gap_mean**2
    return gap_mean, np.where(n_gaps >= 2, np.sqrt(np.clip(var, 0, None)), np.nan)


def _tenure_days(*, customers: pd.DataFrame, orders: _PlacedOrders, now: int) -> np.ndarray:
    """Days since signup, or since the first order of any status when the signup is unknown."""
    tenure = np.full(orders.n, np.nan)
    if orders.pos.size:
        # Ages are >= 0, so max age = the first order; fmax ignores the NaN start.
        np.fmax.at(tenure, orders.pos, orders.age_days)
    if "signup_date" in customers:
        signup = utc_ns(customers["signup_date"])
        has_signup = (signup != np.iinfo(np.int64).min) & (signup < now)
        tenure = np.where(has_signup, (now - signup) / _NS_PER_DAY, tenure)
    return tenure


def _btyd_features(
    *,
    orders: _PlacedOrders,
    now: int,
    btyd_params: btyd.BgNbdParams | Mapping[str, Any] | None,
) -> tuple[dict[str, np.ndarray], btyd.BgNbdParams]:
    """BG/NBD ("buy 'til you die") columns on completed orders, and the parameters used
    (fitted on these customers unless given)."""
    completed = orders.completed
    bx, btx, bT = btyd.summary_from_orders(
        positions=orders.pos[completed],
        placed_ns=orders.placed[completed],
        now_ns=now,
        n_customers=orders.n,
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


def _attribute_frame(attributes: pd.Series, index: pd.Index) -> pd.DataFrame:
    records = [a if isinstance(a, dict) else {} for a in attributes.tolist()]
    raw = pd.DataFrame.from_records(records, index=index) if records else pd.DataFrame(index=index)
    data: dict[str, pd.Series] = {}
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
            data[column] = pd.to_numeric(col, errors="coerce").astype(np.float32)
        else:
            data[column] = _as_category_strings(col)
    return pd.DataFrame(data, index=index)


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
