"""Population stability index (PSI) between the training population and a scored one.

PSI = Σ (actual% - expected%) · ln(actual% / expected%) over bins. Numeric features use
quantile bins of the training data (plus one bin for missing values), categorical features
use the training categories (plus "other" for unseen ones and one for missing), and the score
uses quantile bins of the reference scores.
Status: ok < 0.1 ≤ watch < 0.25 ≤ alert (the usual credit-scoring rule of thumb).

The reference (built at training, `scoring.ml.train`) is the population the model was fitted
on at ONE cutoff, the latest, scored by the final model itself: a population scored at its own
cutoff then reads "stable" (PSI near 0), and only a real change reads as drift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scoring.ml.features import FeatureSpec

WATCH_PSI = 0.1
ALERT_PSI = 0.25
# Shares are floored at this value so an empty bin gives a large but finite PSI.
_EPS = 1e-4
_OTHER = "__other__"
_MISSING = "__missing__"


def psi_status(value: float) -> str:
    if not np.isfinite(value) or value < WATCH_PSI:
        return "ok"
    return "watch" if value < ALERT_PSI else "alert"


@dataclass(frozen=True)
class NumericBins:
    edges: tuple[float, ...]  # inner cut points; bins are (-inf, e0], (e0, e1], ..., (ek, inf)
    shares: tuple[float, ...]  # len(edges) + 2: the bins, then the missing-value share


@dataclass(frozen=True)
class CategoryShares:
    shares: Mapping[str, float]  # training categories, plus _OTHER and _MISSING


@dataclass(frozen=True)
class DriftReference:
    """What the training population looked like; stored with the model."""

    numeric: Mapping[str, NumericBins] = field(default_factory=dict)
    categorical: Mapping[str, CategoryShares] = field(default_factory=dict)
    score: NumericBins | None = None
    n_rows: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_rows": self.n_rows,
            "numeric": {
                k: {"edges": list(v.edges), "shares": list(v.shares)}
                for k, v in self.numeric.items()
            },
            "categorical": {k: dict(v.shares) for k, v in self.categorical.items()},
            "score": None
            if self.score is None
            else {"edges": list(self.score.edges), "shares": list(self.score.shares)},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftReference:
        def bins(d: Mapping[str, Any]) -> NumericBins:
            return NumericBins(edges=tuple(d["edges"]), shares=tuple(d["shares"]))

        return cls(
            numeric={k: bins(v) for k, v in data["numeric"].items()},
            categorical={k: CategoryShares(shares=dict(v)) for k, v in data["categorical"].items()},
            score=None if data.get("score") is None else bins(data["score"]),
            n_rows=int(data.get("n_rows", 0)),
        )


@dataclass(frozen=True)
class DriftReport:
    """PSI per feature and of the scores; `dataclasses.asdict` of it is JSON-safe."""

    psi: Mapping[str, float]  # per feature
    feature_status: Mapping[str, str]
    score_psi: float | None
    status: str  # worst of the score and all features
    n_rows: int


def _numeric_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    bins = np.searchsorted(edges, values[~missing], side="left")
    counts = np.bincount(bins, minlength=len(edges) + 1).astype(np.float64)
    return np.append(counts, missing.sum())


def _numeric_bins(values: np.ndarray, n_bins: int) -> NumericBins:
    values = np.asarray(values, dtype=np.float64)
    present = values[~np.isnan(values)]
    if present.size:
        qs = np.quantile(present, np.linspace(0, 1, n_bins + 1)[1:-1])
        edges = np.unique(qs)
    else:
        edges = np.array([], dtype=np.float64)
    counts = _numeric_counts(values, edges)
    return NumericBins(
        edges=tuple(float(e) for e in edges),
        shares=tuple(float(c) for c in counts / max(len(values), 1)),
    )


def _category_counts(values: pd.Series, categories: list[str]) -> np.ndarray:
    known = [c for c in categories if c not in (_OTHER, _MISSING)]
    missing = values.isna().to_numpy()
    codes = pd.Index(known, dtype=object).get_indexer(values.astype(object).to_numpy())
    counts = np.bincount(codes[codes >= 0], minlength=len(known)).astype(np.float64)
    other = float(((codes < 0) & ~missing).sum())
    return np.concatenate([counts, [other, float(missing.sum())]])


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI between two vectors of bin shares (or counts; both are normalised)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    e = np.clip(e / max(e.sum(), 1e-12), _EPS, None)
    a = np.clip(a / max(a.sum(), 1e-12), _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def build_drift_reference(
    *, X: pd.DataFrame, spec: FeatureSpec, scores: np.ndarray | None = None, n_bins: int = 10
) -> DriftReference:
    numeric = {name: _numeric_bins(X[name].to_numpy(), n_bins) for name in spec.numeric}
    categorical: dict[str, CategoryShares] = {}
    for name in spec.categorical:
        col = X[name]
        shares = col.astype(object).value_counts(normalize=False, dropna=True)
        total = max(len(col), 1)
        mapping = {str(k): float(v) / total for k, v in shares.items()}
        mapping[_OTHER] = 0.0
        mapping[_MISSING] = float(col.isna().sum()) / total
        categorical[name] = CategoryShares(shares=mapping)
    score = None if scores is None else _numeric_bins(np.asarray(scores), n_bins)
    return DriftReference(numeric=numeric, categorical=categorical, score=score, n_rows=len(X))


def counts_from_cumulative(
    at_or_below: Sequence[float], present: float, missing: float = 0.0
) -> np.ndarray:
    """Bin counts (as `NumericBins` defines them, then the missing count) from the number of
    values at or below each edge: what a database can count without sending the values."""
    cumulative = np.asarray([*at_or_below, present], dtype=np.float64)
    return np.append(np.diff(cumulative, prepend=0.0), float(missing))


def feature_counts(*, reference: DriftReference, X: pd.DataFrame) -> dict[str, list[float]]:
    """Each reference feature present in `X`, counted into its reference bins (numeric: the
    bins, then missing; categorical: the known categories, other, missing). Counts of several
    chunks of customers add up, so a scoring run can count everyone chunk by chunk."""
    out: dict[str, list[float]] = {}
    for name, bins in reference.numeric.items():
        if name in X:
            values = X[name].to_numpy(dtype=np.float64)
            out[name] = _numeric_counts(values, np.array(bins.edges)).tolist()
    for name, cat in reference.categorical.items():
        if name in X:
            out[name] = _category_counts(X[name], list(cat.shares)).tolist()
    return out


def score_counts(*, reference: DriftReference, probabilities: np.ndarray) -> list[float]:
    """`probabilities` counted into the reference's score bins, then the missing ones (what
    `population_stability` takes as `score_counts`; counts of several chunks add up); [] when
    the reference has no score bins."""
    if reference.score is None:
        return []
    values = np.asarray(probabilities, dtype=np.float64)
    return _numeric_counts(values, np.array(reference.score.edges)).tolist()


def population_stability(
    *,
    reference: DriftReference,
    X: pd.DataFrame | None = None,
    counts: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    n_rows: int | None = None,
    scores: np.ndarray | None = None,
    score_counts: np.ndarray | None = None,
) -> DriftReport:
    """PSI of each reference feature and of the scores against the reference.

    The features come as rows (`X`) or already counted (`counts`, summed `feature_counts`, with
    `n_rows` the rows counted); the scores as values (`scores`) or already counted into the
    reference's score bins (`score_counts`, e.g. from `counts_from_cumulative`).
    """
    if X is not None:
        counts, n_rows = feature_counts(reference=reference, X=X), len(X)
    counts = counts or {}
    values: dict[str, float] = {}
    for name, bins in reference.numeric.items():
        if name in counts:
            values[name] = psi(np.array(bins.shares), np.asarray(counts[name]))
    for name, cat in reference.categorical.items():
        if name in counts:
            known = [c for c in cat.shares if c not in (_OTHER, _MISSING)]
            expected = [cat.shares[c] for c in known] + [
                cat.shares.get(_OTHER, 0.0),
                cat.shares.get(_MISSING, 0.0),
            ]
            values[name] = psi(np.array(expected), np.asarray(counts[name]))
    score_psi = None
    if scores is not None and reference.score is not None:
        score_counts = _numeric_counts(
            np.asarray(scores, dtype=np.float64), np.array(reference.score.edges)
        )
    if score_counts is not None and reference.score is not None:
        score_psi = psi(np.array(reference.score.shares), score_counts)
    statuses = {k: psi_status(v) for k, v in values.items()}
    worst = max([*values.values(), score_psi or 0.0], default=0.0)
    return DriftReport(
        psi=values,
        feature_status=statuses,
        score_psi=score_psi,
        status=psi_status(worst),
        n_rows=int(n_rows or 0),
    )


# The status of a PSI in plain words, and what to do about it (the admin and the run report).
STATUS_WORDS = {"ok": "stable", "watch": "shifting", "alert": "changed"}
GUIDANCE = {
    "ok": "Stable: the scored population looks like the one the model was trained on.",
    "watch": "Shifting: some inputs moved a little; keep an eye on the next runs.",
    "alert": "The population changed: retrain the model (churn_train) before trusting its "
    "scores and tiers.",
}


@dataclass(frozen=True)
class DriftRow:
    name: str  # "churn score" or a feature
    psi: float
    status: str  # ok / watch / alert

    @property
    def word(self) -> str:
        return STATUS_WORDS.get(self.status, self.status)


def drift_rows(report: Mapping[str, Any]) -> list[DriftRow]:
    """A stored `DriftReport` (as a dict) as table rows: the score first, then the features
    from the most drifted down."""
    rows: list[DriftRow] = []
    score = report.get("score_psi")
    if isinstance(score, float | int):
        rows.append(DriftRow("churn score", float(score), psi_status(float(score))))
    statuses = report.get("feature_status") or {}
    features = sorted((report.get("psi") or {}).items(), key=lambda kv: -kv[1])
    rows += [DriftRow(k, float(v), statuses.get(k, psi_status(float(v)))) for k, v in features]
    return rows


def drift_guidance(status: str | None) -> str:
    """One sentence for a run's overall drift status."""
    return GUIDANCE.get(status or "", "Not measured: the model has no training reference.")
