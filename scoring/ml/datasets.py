"""Training data as one typed value, and the choice between out-of-time and K-fold validation.

Pure pandas/numpy. `scoring.services.datasets` reads the rows and builds the features; this
module decides which columns train, which rows validate, and returns a frozen `TrainingData`
that `churn_model_train` (and the benchmarks) read by attribute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# Fewest rows of each class for an out-of-time split to be worth evaluating on.
MIN_CLASS_ROWS = 30


# eq=False: the fields are DataFrames and arrays, which have no single truth value to compare.
@dataclass(frozen=True, eq=False)
class TrainingData:
    """Features and labels a model is trained and validated on.

    Without `X_valid` the model is evaluated by stratified K-fold on `X`; with it, it trains on
    `X` (an earlier cutoff) and is validated on `X_valid` (the later one): out of time.
    `X_champion` holds the validation rows with every feature (before `drop`), so the active
    model can score them in the champion/challenger comparison. `label` and `window` are
    JSON-safe and stored with the model.
    """

    X: pd.DataFrame
    y: np.ndarray
    label: Mapping[str, Any]
    window: Mapping[str, Any]
    X_valid: pd.DataFrame | None = None
    y_valid: np.ndarray | None = None
    X_champion: pd.DataFrame | None = None
    # BG/NBD parameters of the latest cutoff, reused when scoring (see build_features).
    btyd_params: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if (self.X_valid is None) != (self.y_valid is None):
            raise ValueError("X_valid and y_valid come together")

    @property
    def validation(self) -> str:
        """ "out_of_time" (validated on `X_valid`) or "stratified" (K-fold on `X`)."""
        return "stratified" if self.X_valid is None else "out_of_time"

    @property
    def holdout_X(self) -> pd.DataFrame:
        """The rows the champion is compared on, with every feature it may have trained on."""
        if self.X_champion is not None:
            return self.X_champion
        return self.X if self.X_valid is None else self.X_valid

    @property
    def holdout_y(self) -> np.ndarray:
        """Labels of `holdout_X` (the validation rows, else the training rows)."""
        return np.asarray(self.y if self.y_valid is None else self.y_valid, dtype=np.int64)

    @property
    def n_rows(self) -> int:
        """Rows trained and validated on (a customer at two cutoffs counts twice)."""
        return len(self.X) + (0 if self.X_valid is None else len(self.X_valid))

    @property
    def positive_rate(self) -> float:
        """Share of churners over every labelled row."""
        later = np.asarray([] if self.y_valid is None else self.y_valid)
        return float(np.concatenate([np.asarray(self.y, dtype=np.int64), later]).mean())


def without_columns(features: pd.DataFrame, *, drop: Sequence[str]) -> pd.DataFrame:
    """`features` without the columns named in `drop` (case-insensitive; `attr_` optional)
    and without columns that hold no information at all (entirely missing)."""
    wanted = {d.lower() for d in drop}
    keep = [
        c
        for c in features.columns
        if c.lower() not in wanted and c.lower().removeprefix("attr_") not in wanted
    ]
    kept = features[keep]
    return kept.loc[:, kept.notna().any()]


def split_label_attribute(customers: pd.DataFrame, *, label: str) -> tuple[pd.DataFrame, pd.Series]:
    """The customers without the `label` attribute (it must never be a feature), and its
    value per customer (NaN where absent)."""
    values = customers["attributes"].map(lambda a: a.get(label))
    stripped = customers.assign(
        attributes=customers["attributes"].map(lambda a: {k: v for k, v in a.items() if k != label})
    )
    return stripped, values


def one_cutoff_data(
    *,
    features: pd.DataFrame,
    y: np.ndarray,
    drop: Sequence[str],
    label: Mapping[str, Any],
    window: Mapping[str, Any],
) -> TrainingData:
    """Features and labels at one cutoff, validated by stratified K-fold."""
    return TrainingData(
        X=without_columns(features, drop=drop),
        y=y,
        label=label,
        window=window,
        X_champion=features,
        btyd_params=features.attrs.get("btyd_params"),
    )


def out_of_time_data(
    *,
    train: tuple[pd.DataFrame, np.ndarray],
    valid: tuple[pd.DataFrame, np.ndarray],
    train_cutoff: pd.Timestamp,
    valid_cutoff: pd.Timestamp,
    drop: Sequence[str],
    label: Mapping[str, Any],
) -> TrainingData:
    """Train at `train_cutoff`, validate at `valid_cutoff` (the out-of-time split).

    The two cutoffs are one label horizon apart, so the training labels are observed before
    the validation features start. When either cutoff has fewer than MIN_CLASS_ROWS of a
    class, the later cutoff alone is used with stratified K-fold (the window says why).
    """
    (X_train, y_train), (X_valid, y_valid) = train, valid
    fewest = min(np.bincount(y_train, minlength=2).min(), np.bincount(y_valid, minlength=2).min())
    if fewest >= MIN_CLASS_ROWS:
        columns = without_columns(X_train, drop=drop).columns
        return TrainingData(
            X=X_train[columns],
            y=y_train,
            X_valid=X_valid.reindex(columns=columns),
            y_valid=y_valid,
            X_champion=X_valid,
            btyd_params=X_valid.attrs.get("btyd_params"),
            label=label,
            window={
                "train_cutoff": train_cutoff.isoformat(),
                "valid_cutoff": valid_cutoff.isoformat(),
            },
        )
    return one_cutoff_data(
        features=X_valid,
        y=y_valid,
        drop=drop,
        label=label,
        window={
            "as_of": valid_cutoff.isoformat(),
            "note": f"not enough history before {train_cutoff:%Y-%m-%d} for an out-of-time "
            "split: stratified cross-validation instead",
        },
    )
