"""A fitted pipeline's transformers applied to a frame, encoders once per distinct row.

The reasons read a model as its members' transformers then a linear or tree model
(`scoring.ml.linear_reasons`, `scoring.ml.tree_reasons`), and transform every scored row
through each member. A fitted transformer's output for a row depends on that row alone, so a
`ColumnTransformer` branch over categories — text columns (a plan, a channel, a contract) or
an encoder's input (the one-hot of the category codes the first step made) — gives the same
rows when it transforms each distinct combination once and the rows take theirs, where
scikit-learn's encoders look every value up one at a time; the other branches are
transformed as they are, over a view of their columns where those are contiguous (a
`ColumnTransformer` copies them out first). Measured on a 50,000-row bench chunk: a member's
second step (one-hot and scaler) 12.9 → 9.3 ms, its first step's distinct rows (~5 ms) found
once for the model's three members, the model's closed form 96 → 69 ms (docs/scaling.md,
"Eighth session"). The shortcut is
checked against the transformer's own `transform` on a sample the first time each fitted
`ColumnTransformer` is seen, and not used where it differs or cannot read the transformer.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype
from sklearn.compose import ColumnTransformer

logger = logging.getLogger(__name__)

# Rows the shortcut is checked on (evenly spread) the first time a ColumnTransformer is seen.
CHECK_ROWS = 500

# Per fitted ColumnTransformer: whether the shortcut reproduced its transform.
_CHECKED: weakref.WeakKeyDictionary[ColumnTransformer, bool] = weakref.WeakKeyDictionary()


def transform_steps(
    steps: Iterable[Any], X: pd.DataFrame, distinct: dict[str, Any] | None = None
) -> np.ndarray:
    """The fitted `steps` applied in turn to X, as float64: each `ColumnTransformer` by
    `column_transform` (the same values, encoders once per distinct row). `distinct`: where
    the distinct rows of X's columns found by the first step are kept for the next call over
    the same, unchanged X (a model's members, transformed one after another, read the same
    text columns first: a third of that step's time, once per member)."""
    Z: Any = X
    for position, step in enumerate(steps):
        fast = None
        if isinstance(step, ColumnTransformer):
            fast = column_transform(step, Z, distinct if position == 0 else None)
        Z = fast if fast is not None else step.transform(Z)
    return np.asarray(Z, dtype=np.float64)


def column_transform(
    ct: ColumnTransformer, X: pd.DataFrame | np.ndarray, distinct: dict[str, Any] | None = None
) -> np.ndarray | None:
    """`ct.transform(X)` (X a frame, or a 2-d array for a later step), each branch over
    categories transformed once per distinct row of them (kept in `distinct` by columns,
    when given: for X only); None where the shortcut does not apply (a branch it cannot
    read, or it differed from `ct.transform` when checked)."""
    if not isinstance(X, pd.DataFrame | np.ndarray) or X.ndim != 2 or len(X) == 0:
        return None
    verdict = _CHECKED.get(ct)
    if verdict is False:
        return None
    try:
        out = _branches(ct, X, distinct)
        if out is not None and verdict is None:
            spread = np.unique(np.linspace(0, len(X) - 1, min(len(X), CHECK_ROWS)).astype(np.int64))
            sample = X.iloc[spread] if isinstance(X, pd.DataFrame) else X[spread]
            expected = ct.transform(sample)
            got = _branches(ct, sample)
            verdict = bool(
                got is not None
                and isinstance(expected, np.ndarray)
                and expected.shape == got.shape
                and expected.dtype == got.dtype
                and np.array_equal(expected, got, equal_nan=expected.dtype.kind == "f")
            )
            _CHECKED[ct] = verdict
            if not verdict:
                logger.info("transforms: distinct-row shortcut differs from transform; not used")
                return None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        logger.info("transforms: distinct-row shortcut not usable (%s)", exc)
        _CHECKED[ct] = False
        return None
    return out


def _branches(
    ct: ColumnTransformer, X: pd.DataFrame | np.ndarray, distinct: dict[str, Any] | None = None
) -> np.ndarray | None:
    blocks: list[tuple[int, np.ndarray]] = []
    for name, transformer, columns in ct.transformers_:
        place = ct.output_indices_.get(name)
        if place is None or place.stop == place.start or transformer == "drop":
            continue
        sub = _columns(X, columns)
        if sub is None:
            return None
        if transformer == "passthrough":
            block = sub.to_numpy() if isinstance(sub, pd.DataFrame) else sub
        elif _categories(sub, transformer) and (found := _distinct_of(sub, columns, distinct)):
            first, inverse = found
            rows = sub.iloc[first] if isinstance(sub, pd.DataFrame) else sub[first]
            block = np.asarray(transformer.transform(rows))[inverse]
        else:
            block = np.asarray(transformer.transform(sub))
        if block.ndim != 2 or block.shape[1] != place.stop - place.start:
            return None
        blocks.append((place.start, block))
    if not blocks:
        return None
    return np.hstack([block for _, block in sorted(blocks, key=lambda b: b[0])])


def _columns(X: pd.DataFrame | np.ndarray, columns: Any) -> pd.DataFrame | np.ndarray | None:
    """The branch's columns of X: a frame's by name or position; an array's by position (a
    view where they are contiguous and ascending, as a one-hot of the leading codes and the
    remainder after them are)."""
    if isinstance(columns, slice):
        return X.iloc[:, columns] if isinstance(X, pd.DataFrame) else X[:, columns]
    if isinstance(columns, np.ndarray) and columns.dtype == bool:
        columns = np.flatnonzero(columns).tolist()
    if isinstance(columns, np.ndarray):
        columns = columns.tolist()
    if isinstance(X, pd.DataFrame):
        if isinstance(columns, str):
            return X[[columns]]
        if isinstance(columns, Sequence) and all(isinstance(c, str) for c in columns):
            return X[list(columns)]
    elif isinstance(columns, str):
        return None
    if not (
        isinstance(columns, Sequence) and all(isinstance(c, int | np.integer) for c in columns)
    ):
        return None
    positions = [int(c) for c in columns]
    if isinstance(X, pd.DataFrame):
        return X.iloc[:, positions]
    if positions and positions == list(range(positions[0], positions[0] + len(positions))):
        return X[:, positions[0] : positions[0] + len(positions)]
    return X[:, positions]


def _categories(sub: pd.DataFrame | np.ndarray, transformer: Any) -> bool:
    """Whether a branch reads categories: its columns all text, or its transformer an encoder
    (fitted `categories_`: one-hot, ordinal — reading the codes an earlier step made)."""
    if hasattr(transformer, "categories_"):
        return True
    if not isinstance(sub, pd.DataFrame):
        return False
    text = ("string", "empty")
    return all(
        sub[c].dtype == object and infer_dtype(sub[c].to_numpy(), skipna=True) in text
        for c in sub.columns
    )


def _distinct_of(
    sub: pd.DataFrame | np.ndarray, columns: Any, distinct: dict[str, Any] | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """`_distinct_rows(sub)`, looked up in (and kept in) `distinct` by the branch's columns."""
    if distinct is None:
        return _distinct_rows(sub)
    key = repr(columns)
    if key not in distinct:
        distinct[key] = _distinct_rows(sub)
    return distinct[key]


def _distinct_rows(sub: pd.DataFrame | np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(first row of each distinct combination, each row's combination number); None when
    the combinations are too many to number in one int64. Missing values are told apart by
    type (None is not NaN to an imputer)."""
    key = np.zeros(len(sub), dtype=np.int64)
    combinations = 1
    columns = (
        [sub[c].to_numpy() for c in sub.columns]
        if isinstance(sub, pd.DataFrame)
        else [sub[:, j] for j in range(sub.shape[1])]
    )
    for values in columns:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        size = len(uniques)
        missing = np.flatnonzero(codes < 0)
        if len(missing):
            names = np.asarray([type(v).__name__ for v in values[missing].tolist()], dtype=object)
            kinds, kind_names = pd.factorize(names)
            codes = codes.copy()
            codes[missing] = size + kinds
            size += len(kind_names)
        combinations *= max(size, 1)
        if combinations >= 2**62:
            return None
        key = key * max(size, 1) + codes
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return first, np.asarray(inverse).reshape(-1)
