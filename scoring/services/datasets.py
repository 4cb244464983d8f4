"""Training data assembly: customers' rows read through customers.selectors, labelled and
featurised as of a cutoff (or a labelled file), returned as a `TrainingData`; no writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.utils import timezone

from common.tables import TableError, read_table
from customers.selectors import (
    attribute_versions_frame_for_ids,
    customers_frame_for_ids,
    events_frame_for_ids,
    order_versions_frame_for_ids,
    orders_frame_for_ids,
)
from scoring.errors import TrainingError
from scoring.ml.datasets import (
    TrainingData,
    one_cutoff_data,
    out_of_time_data,
    split_label_attribute,
)
from scoring.ml.features import build_features, build_snapshot_features, orders_as_of
from scoring.ml.labels import behaviour_labels, parse_explicit_label


def training_data_from_database(
    *,
    label_attribute: str | None = None,
    as_of: datetime | None = None,
    horizon_days: int | None = None,
    drop: Sequence[str] = (),
    first_id: int | None = None,
    last_id: int | None = None,
) -> TrainingData:
    """Features and labels from the database, as of the cutoff (nothing later leaks in).

    Explicit label: every customer carrying `label_attribute`, features as of `as_of` (default
    now). Behaviour label: customers with an order before `as_of`; churned if none in the next
    `horizon_days`. For out-of-time validation the model is also trained at the earlier cutoff
    `as_of - horizon` and validated at `as_of` when both cutoffs have enough customers.
    `first_id`/`last_id` restrict the data to a sample of customer ids (the benchmark's).
    """
    ids: dict[str, Any] = {"first_id": first_id, "last_id": last_id}
    orders = orders_frame_for_ids(**ids)
    events = events_frame_for_ids(**ids)
    customers = customers_frame_for_ids(**ids)
    history = _History(
        orders=order_versions_frame_for_ids(**ids),
        attributes=attribute_versions_frame_for_ids(**ids),
    )
    if label_attribute:
        return _attribute_label_data(
            orders=orders,
            events=events,
            customers=customers,
            history=history,
            label_attribute=label_attribute,
            as_of=pd.Timestamp(as_of or timezone.now()),
            drop=drop,
        )
    if as_of is None or horizon_days is None:
        raise TrainingError("give either --label-attribute COLUMN or --as-of DATE --horizon DAYS")
    return _behaviour_label_data(
        orders=orders,
        events=events,
        customers=customers,
        history=history,
        as_of=as_of,
        horizon_days=horizon_days,
        drop=drop,
    )


@dataclass(frozen=True)
class _History:
    """Earlier states of orders and attributes (customers.versions): features read the data
    as it was at the cutoff, not as it is now."""

    orders: pd.DataFrame
    attributes: pd.DataFrame

    def without_attribute(self, label: str) -> _History:
        """The same history without the label attribute (it must never be a feature)."""
        stripped = self.attributes.assign(
            attributes=self.attributes["attributes"].map(
                lambda a: {k: v for k, v in a.items() if k != label}
            )
        )
        return _History(orders=self.orders, attributes=stripped)


def _attribute_label_data(
    *,
    orders: pd.DataFrame,
    events: pd.DataFrame,
    customers: pd.DataFrame,
    history: _History,
    label_attribute: str,
    as_of: pd.Timestamp,
    drop: Sequence[str],
) -> TrainingData:
    """Every customer carrying the label attribute, features as of `as_of`."""
    customers, raw = split_label_attribute(customers, label=label_attribute)
    present = raw.notna()
    if not present.any():
        raise TrainingError(
            f"no customer has the attribute '{label_attribute}'; import a file with that "
            "column or use --as-of/--horizon for a behaviour label"
        )
    try:
        y = parse_explicit_label(values=raw[present].to_numpy())
    except ValueError as exc:
        raise TrainingError(f"label attribute '{label_attribute}': {exc}") from exc
    subset = customers[present.to_numpy()]
    history = history.without_attribute(label_attribute)
    features = build_features(
        orders=orders,
        events=events,
        customers=subset,
        as_of=as_of,
        order_versions=history.orders,
        attribute_versions=history.attributes,
    )
    return one_cutoff_data(
        features=features,
        y=y,
        drop=drop,
        label={"kind": "attribute", "attribute": label_attribute},
        window={"as_of": as_of.isoformat()},
    )


def _behaviour_label_data(
    *,
    orders: pd.DataFrame,
    events: pd.DataFrame,
    customers: pd.DataFrame,
    history: _History,
    as_of: datetime,
    horizon_days: int,
    drop: Sequence[str],
) -> TrainingData:
    """Churned = no order within `horizon_days` after the cutoff; out of time when possible."""
    cutoff = pd.Timestamp(as_of)
    cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff
    last_order = orders["placed_at"].max() if len(orders) else None
    if last_order is None or pd.isna(last_order):
        raise TrainingError("there are no orders: import orders before training a behaviour label")
    if cutoff + pd.Timedelta(days=horizon_days) > last_order + pd.Timedelta(days=1):
        raise TrainingError(
            f"the label window {cutoff:%Y-%m-%d} + {horizon_days} days ends after the last order "
            f"({last_order:%Y-%m-%d}): churn there is not observed yet; choose an earlier --as-of"
        )

    def at(when: pd.Timestamp) -> tuple[pd.DataFrame, np.ndarray]:
        labels = behaviour_labels(
            orders=orders,
            cutoff=when,
            horizon_days=horizon_days,
            orders_at_cutoff=orders_as_of(orders=orders, versions=history.orders, as_of=when),
        ).as_series()
        subset = customers[customers["customer_id"].isin(labels.index)]
        X = build_features(
            orders=orders,
            events=events,
            customers=subset,
            as_of=when,
            order_versions=history.orders,
            attribute_versions=history.attributes,
        )
        return X, labels.reindex(X.index).to_numpy()

    valid = at(cutoff)
    train_cutoff = cutoff - pd.Timedelta(days=horizon_days)
    return out_of_time_data(
        train=at(train_cutoff),
        valid=valid,
        train_cutoff=train_cutoff,
        valid_cutoff=cutoff,
        drop=drop,
        label={"kind": "behaviour", "horizon_days": horizon_days, "as_of": cutoff.isoformat()},
    )


def training_data_from_file(
    *, path: Path, label: str, id_column: str | None = None, drop: Sequence[str] = ()
) -> TrainingData:
    """Features and labels from a labelled CSV/XLSX (one row per customer)."""
    table = training_table_read(path=path)
    if label not in table.columns:
        raise TrainingError(f"{path}: no column '{label}' (columns: {', '.join(table.columns)})")
    if id_column and id_column not in table.columns:
        raise TrainingError(f"{path}: no id column '{id_column}'")
    missing = [d for d in drop if d not in table.columns]
    if missing:
        raise TrainingError(f"{path}: --drop names unknown column(s) {', '.join(missing)}")
    try:
        y = parse_explicit_label(values=table[label].to_numpy())
    except ValueError as exc:
        raise TrainingError(f"{path}: label '{label}': {exc}") from exc
    X = build_snapshot_features(table=table, id_column=id_column, label_column=label, drop=drop)
    return TrainingData(
        X=X,
        y=y,
        label={
            "kind": "file",
            "path": str(path),
            "label": label,
            "id": id_column,
            "drop": list(drop),
        },
        window={},
    )


def training_table_read(*, path: Path) -> pd.DataFrame:
    """The rows of a CSV (any delimiter) or Excel file, as `churn_train --csv` and
    `churn_score --csv` read them (common.tables, types inferred)."""
    try:
        return read_table(path)
    except TableError as exc:
        raise TrainingError(str(exc)) from exc
