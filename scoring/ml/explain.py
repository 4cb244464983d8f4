"""Per-customer reasons: which features push each customer's churn probability up.

Method (model-agnostic, vectorised per feature): for a chunk of customers, replace one
feature at a time by its typical training value (median / most frequent category) for all
customers whose value differs, re-score them with one `predict_proba` call, and take
contribution = p(actual) - p(with typical value). A positive contribution means the
customer's own value raises the risk. The top `top_k` positive contributions become short
phrases ("no order for 143 days", "Contract is Month-to-month"; `scoring.ml.phrases`).
Cost: one prediction per feature per differing row of the chunk (batched into few calls).

Linear models (logistic regression after column-wise preprocessing, optionally inside
`CalibratedClassifierCV`) get the same numbers in closed form (`scoring.ml.linear_reasons`),
checked on a sample of every chunk against the perturbation method; any difference falls
back to it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from scoring.ml.features import FeatureSpec
from scoring.ml.linear_reasons import (
    CHECK_TOLERANCE,
    LinearScores,
    linear_contributions,
    linear_scores,
    sample_rows,
)
from scoring.ml.phrases import as_number, describer, numeric_phrase_for

# Contributions below this (in probability) are noise, not a reason.
MIN_CONTRIBUTION = 1e-3
# Perturbed rows scored per predict_proba call: few calls, with their intermediate matrices
# (tens of float64 columns per row) kept to a few hundred MB.
PREDICT_BATCH_ROWS = 250_000

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Explanations:
    """Reasons for the rows of the explained frame, as arrays (one row per frame row).

    `top_features[i]` holds positions in `columns` (-1 past the row's last reason),
    `top_contributions[i]` their contributions and `top_phrases[i]` positions in `phrases`,
    the distinct texts. Rows below the threshold, or with nothing raising their risk, hold
    only -1. The tuple views (`reasons`, `features`, `contributions`) and `reasons_json`
    are built from these on demand.
    """

    index: pd.Index
    probabilities: np.ndarray
    columns: tuple[str, ...]
    top_features: np.ndarray
    top_contributions: np.ndarray
    top_phrases: np.ndarray
    phrases: np.ndarray

    @cached_property
    def reasons(self) -> tuple[tuple[str, ...], ...]:
        return self._rows(self.phrases.tolist(), self.top_phrases)

    @cached_property
    def features(self) -> tuple[tuple[str, ...], ...]:
        return self._rows(list(self.columns), self.top_features)

    @cached_property
    def contributions(self) -> tuple[tuple[float, ...], ...]:
        values = self.top_contributions.tolist()
        counts = (self.top_features >= 0).sum(axis=1).tolist()
        return tuple(tuple(v[:c]) for v, c in zip(values, counts, strict=True))

    @staticmethod
    def _rows(names: list[Any], codes: np.ndarray) -> tuple[tuple[Any, ...], ...]:
        return tuple(tuple(names[c] for c in row if c >= 0) for row in codes.tolist())

    def reasons_json(self) -> np.ndarray:
        """Each row's reasons as a JSON array text ('[]' for none), built per distinct text."""
        quoted = np.asarray([json.dumps(p) for p in self.phrases.tolist()] + [""], dtype=object)
        codes = self.top_phrases
        out = np.full(len(codes), "[", dtype=object)
        for k in range(codes.shape[1]):
            present = codes[:, k] >= 0
            separator = ", " if k else ""
            out = out + np.where(present, separator, "") + quoted[codes[:, k]]
        return out + "]"

    def to_records(self) -> list[dict[str, Any]]:
        return [
            {
                "customer_id": cid,
                "probability": float(p),
                "reasons": list(r),
                "features": list(f),
                "contributions": [round(c, 4) for c in cs],
            }
            for cid, p, r, f, cs in zip(
                self.index,
                self.probabilities,
                self.reasons,
                self.features,
                self.contributions,
                strict=True,
            )
        ]


def _differs(values: pd.Series, reference: Any, categorical: bool) -> np.ndarray:
    if categorical:
        arr = values.astype(object).to_numpy()
        missing = pd.isna(arr)
        if reference is None:
            return ~missing
        return missing | (arr != reference)
    arr = values.to_numpy(dtype=np.float64)
    ref = as_number(reference)
    if np.isnan(ref):
        return ~np.isnan(arr)
    return np.isnan(arr) | (arr != ref)


def _perturbed_predictions(
    *,
    estimator: Any,
    sub: pd.DataFrame,
    base: np.ndarray,
    jobs: list[tuple[int, np.ndarray, Any]],
    contrib: np.ndarray,
) -> None:
    """contrib[idx, j] = base[idx] - p(rows idx with feature j at its typical value).

    The perturbed copies of several features go to the estimator together, up to
    PREDICT_BATCH_ROWS rows per `predict_proba` call: each call has a fixed cost (column
    checks, one transformer pass per column), and the rows are scored independently.
    """
    columns = list(sub.columns)
    values = [sub[c].to_numpy() for c in columns]
    dtypes = [sub[c].dtype for c in columns]
    segments = [
        (j, idx[start : start + PREDICT_BATCH_ROWS], fill)
        for j, idx, fill in jobs
        for start in range(0, len(idx), PREDICT_BATCH_ROWS)
    ]
    batches: list[list[tuple[int, np.ndarray, Any]]] = []
    size = PREDICT_BATCH_ROWS
    for segment in segments:
        if size + len(segment[1]) > PREDICT_BATCH_ROWS:
            batches.append([])
            size = 0
        batches[-1].append(segment)
        size += len(segment[1])
    for batch in batches:
        take = np.concatenate([idx for _, idx, _ in batch])
        data = [v[take] for v in values]
        offset = 0
        for j, idx, fill in batch:
            # The same typed constant the column would hold: pandas casts it for the dtype.
            filled = pd.Series(fill, index=pd.RangeIndex(len(idx)), dtype=dtypes[j])
            data[j][offset : offset + len(idx)] = filled.to_numpy()
            offset += len(idx)
        frame = pd.DataFrame(
            {c: pd.Series(d, dtype=t, copy=False) for c, d, t in zip(columns, data, dtypes)}
        )
        predicted = estimator.predict_proba(frame)[:, 1]
        offset = 0
        for j, idx, _ in batch:
            contrib[idx, j] = base[idx] - predicted[offset : offset + len(idx)]
            offset += len(idx)


def _contributions(
    *,
    estimator: Any,
    sub: pd.DataFrame,
    base: np.ndarray,
    fills: list[Any],
    differs: np.ndarray,
    scores: LinearScores | None,
) -> np.ndarray:
    """Every row's contribution of every input: closed form for linear models (`scores`,
    checked on a sample of rows), else one perturbed prediction per differing (row, input)."""
    n, m = differs.shape
    if scores is not None and n:
        try:
            contrib = linear_contributions(
                scores=scores, sub=sub, fills=fills, differs=differs, base=base
            )
        except (ValueError, TypeError) as exc:  # a transformer refusing a probe
            logger.info("reasons: linear shortcut not usable (%s); perturbing instead", exc)
        else:
            sample = sample_rows(sub)
            check = np.zeros((len(sample), m))
            _perturbed_predictions(
                estimator=estimator,
                sub=sub.iloc[sample],
                base=base[sample],
                jobs=_jobs(differs[sample], fills),
                contrib=check,
            )
            if np.max(np.abs(check - contrib[sample]), initial=0.0) <= CHECK_TOLERANCE:
                return contrib
            logger.warning("reasons: linear shortcut disagrees with perturbation; perturbing")
    contrib = np.zeros((n, m))
    if n:
        _perturbed_predictions(
            estimator=estimator, sub=sub, base=base, jobs=_jobs(differs, fills), contrib=contrib
        )
    return contrib


def _jobs(differs: np.ndarray, fills: list[Any]) -> list[tuple[int, np.ndarray, Any]]:
    return [
        (j, idx, fills[j])
        for j in range(differs.shape[1])
        if len(idx := np.flatnonzero(differs[:, j]))
    ]


def explain_customers(
    *,
    estimator: Any,
    X: pd.DataFrame,
    spec: FeatureSpec,
    reference: Mapping[str, Any],
    threshold: float = 0.0,
    top_k: int = 3,
    probabilities: np.ndarray | None = None,
    templates: Mapping[str, str] | None = None,
) -> Explanations:
    """Top `top_k` reasons for every row of X whose probability is >= `threshold`.

    `reference` is the training medians/modes (`TrainingResult.reference_values`).
    The probabilities come from `estimator.predict_proba` (or, for a linear model, from the
    same closed form, checked against it) unless passed in as `probabilities`.
    """
    X = X.loc[:, list(spec.columns)]
    n = len(X)
    # A linear model is transformed once, for both its probabilities and its reasons.
    scores = linear_scores(estimator, X)
    if probabilities is not None:
        p = np.asarray(probabilities, dtype=np.float64)
    elif scores is not None and scores.exact:
        p = scores.probability()
    else:
        p = estimator.predict_proba(X)[:, 1] if n else np.zeros(0)
    rows = np.flatnonzero(p >= threshold)
    columns = list(spec.columns)
    categorical = set(spec.categorical)
    sub = X.iloc[rows] if len(rows) else X.iloc[:0]
    contrib = _row_contributions(
        estimator=estimator,
        sub=sub,
        base=p[rows],
        categorical=categorical,
        reference=reference,
        scores=scores.rows(rows) if scores is not None else None,
    )

    # A few spare candidates: two features can read the same ("no orders yet"), and each row
    # keeps its top_k distinct phrases.
    k = min(top_k + 3, len(columns))
    order = np.argsort(-contrib, axis=1)[:, :k]
    top_values = np.take_along_axis(contrib, order, axis=1)
    keep = top_values > MIN_CONTRIBUTION
    codes, phrases = _phrase_codes(
        sub=sub,
        order=order,
        keep=keep,
        categorical=categorical,
        reference=reference,
        templates=templates,
    )
    # A candidate counts if it is kept and its text is not already earlier in its row; each
    # row keeps its first top_k such candidates, in order.
    valid = keep & (codes >= 0)
    for c in range(1, k):
        valid[:, c] &= ~(codes[:, :c] == codes[:, c : c + 1]).any(axis=1)
    chosen = valid & (np.cumsum(valid, axis=1) <= top_k)
    width = min(top_k, k)
    position = np.argsort(~chosen, axis=1, kind="stable")[:, :width]
    present = np.take_along_axis(chosen, position, axis=1)

    def top(values: np.ndarray, fill: Any, dtype: Any) -> np.ndarray:
        """Each explained row's chosen candidates of `values`, `fill` past them; all rows."""
        out = np.full((n, width), fill, dtype=dtype)
        out[rows] = np.where(present, np.take_along_axis(values, position, axis=1), fill)
        return out

    return Explanations(
        index=X.index,
        probabilities=p,
        columns=tuple(columns),
        top_features=top(order, -1, np.int64),
        top_contributions=top(top_values, 0.0, np.float64),
        top_phrases=top(codes, -1, np.int64),
        phrases=np.asarray(phrases, dtype=object),
    )


def _row_contributions(
    *,
    estimator: Any,
    sub: pd.DataFrame,
    base: np.ndarray,
    categorical: set[str],
    reference: Mapping[str, Any],
    scores: LinearScores | None,
) -> np.ndarray:
    """Contribution of each input (columns of `sub`) to each row's probability `base`: zero
    where the row already holds the input's typical value."""
    columns = list(sub.columns)
    # Each input's typical value, as the typed constant the column would hold.
    fills = [
        reference.get(c) if c in categorical else np.float32(as_number(reference.get(c)))
        for c in columns
    ]
    differs = np.zeros((len(sub), len(columns)), dtype=bool)
    for j, col in enumerate(columns):
        if len(sub):
            differs[:, j] = _differs(sub[col], reference.get(col), col in categorical)
    return _contributions(
        estimator=estimator, sub=sub, base=base, fills=fills, differs=differs, scores=scores
    )


def _phrase_codes(
    *,
    sub: pd.DataFrame,
    order: np.ndarray,
    keep: np.ndarray,
    categorical: set[str],
    reference: Mapping[str, Any],
    templates: Mapping[str, str] | None,
) -> tuple[np.ndarray, list[str]]:
    """The phrase number of each kept candidate (`order` holds column positions; -1 where not
    kept) and the distinct phrases. Phrases are built per feature for the distinct values of
    the rows that cite it, and numbered globally: the same text from two features gets one
    number."""
    columns = list(sub.columns)
    numbers: dict[str, int] = {}
    codes = np.full(order.shape, -1, dtype=np.int64)
    for j in np.unique(order[keep]):
        col = columns[j]
        hit_rows, hit_cols = np.nonzero((order == j) & keep)
        values = sub[col].to_numpy()[hit_rows]
        phrase = describer(
            name=col,
            reference=reference.get(col),
            categorical=col in categorical,
            templates=templates,
        )
        if values.dtype.kind == "f":
            # Distinct bit patterns, so -0.0 and 0.0 stay apart.
            bits = np.ascontiguousarray(values).view(f"u{values.dtype.itemsize}")
            _, first, inverse = np.unique(bits, return_index=True, return_inverse=True)
            if col not in categorical and not (templates and col in templates):
                # Plain floats straight to the numeric phrase (no per-value conversion).
                phrase = numeric_phrase_for(col, reference.get(col))
            distinct = values[first].astype(np.float64).tolist()
        else:
            inverse = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=False)[0]
            first = np.unique(inverse, return_index=True)[1]
            distinct = values[first].tolist()
        texts = [phrase(v) for v in distinct]
        number = np.asarray([numbers.setdefault(t, len(numbers)) for t in texts], dtype=np.int64)
        codes[hit_rows, hit_cols] = number[np.asarray(inverse).reshape(-1)]
    return codes, list(numbers)
