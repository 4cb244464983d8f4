"""Additive reasons: Shapley attributions over groups of inputs that move together.

What adds up. Every attribution is measured against one stated baseline: the model's
probability for the *typical customer* (every input at its training median / most frequent
category, `TrainingResult.reference_values`). For each customer

    baseline + sum(attributions) = the customer's probability      (exactly, up to rounding)

Three methods, chosen per model (`Attributions.method`):

- "exact-linear": a logistic regression after column-wise preprocessing (optionally several,
  averaged by `CalibratedClassifierCV`). Its decision (log-odds) is a sum over inputs, so each
  input's Shapley value in log-odds against the typical customer is exactly
  w·(z - z_typical) over the transformed columns it feeds; a group's value is its members'
  sum. Calibration maps the decision to a probability nonlinearly; each log-odds attribution
  is mapped to probability points by the *proportional rule*: multiplied by
  (p(x) - p(typical)) / (d(x) - d(typical)) of its calibrated member (the slope of the link at
  d when the two decisions are equal), then averaged over members. The mapped values keep the
  log-odds values' signs and proportions and add up exactly to p(x) - baseline.
- "exact-tree": a tree model (gradient boosting, forests), also calibrated: TreeSHAP of each
  member's response, mapped by the same proportional rule (`scoring.ml.tree_reasons`).
- "sampled": any other model. Antithetic permutation sampling of the Shapley values of the
  game v(S) = p(x with the groups outside S at their typical values): for each of
  `PERMUTATIONS` orders of the groups (half of them the reverse of the other half) the groups
  are switched from typical to actual one at a time and each group is credited with the change
  it makes; every customer draws its own orders. Every permutation's credits add up to
  p(x) - baseline exactly, so their mean does too; `Attributions.errors` is each value's
  standard error, from the spread between the antithetic pairs (estimated from few pairs, so
  it is reliable over many customers, not for one). Cost: PERMUTATIONS × (groups - 1)
  predicted rows per explained customer (fewer where a switched group is already typical);
  every coalition of every order is known before any prediction, so all of them go to the
  model together, in calls of at most BATCH_ROWS rows (the per-call cost of a pipeline and a
  tree ensemble is paid a few times per chunk, not once per step).

Groups (`FeatureGroups`, from `feature_groups`): numeric inputs whose Spearman correlation on
the training rows is at least GROUP_CORRELATION in absolute value (complete linkage, so every
pair in a group is that correlated) form one group, stored with the model; every other input
is a group of one. A group is one player of the game and one reason ("new customer: tenure 1
(typical 29), TotalCharges 100.80 (typical 1,397)"): none of its members is ever shown alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

# Numeric inputs at least this correlated (|Spearman rho| on the training rows) are one reason.
GROUP_CORRELATION = 0.8
# Training rows the correlations are measured on (a seeded sample beyond this).
GROUP_ROWS = 50_000
# Permutations of the sampled method (an even number: each order and its reverse).
PERMUTATIONS = 4
SAMPLE_SEED = 20260115
# Most rows of one prediction call of the sampled method (bounds its memory: a frame of this
# many rows of the model's inputs); the coalitions of all permutations share the calls.
BATCH_ROWS = 200_000


@dataclass(frozen=True)
class FeatureGroups:
    """Groups of inputs, each one reason; `members[g]` lists group g's inputs, lead first."""

    members: tuple[tuple[str, ...], ...]
    threshold: float = GROUP_CORRELATION

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(" + ".join(m) for m in self.members)

    @classmethod
    def singletons(cls, columns: Sequence[str]) -> FeatureGroups:
        return cls(tuple((c,) for c in columns))

    def to_dict(self) -> dict[str, Any]:
        return {"members": [list(m) for m in self.members], "threshold": self.threshold}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, columns: Sequence[str]) -> FeatureGroups:
        """The stored groups over `columns` (a model without stored groups: one per input)."""
        if not data or not data.get("members"):
            return cls.singletons(columns)
        known = set(columns)
        members = [tuple(c for c in m if c in known) for m in data["members"]]
        members = [m for m in members if m]
        seen = {c for m in members for c in m}
        members += [(c,) for c in columns if c not in seen]
        return cls(tuple(members), float(data.get("threshold", GROUP_CORRELATION)))

    def membership(self, columns: Sequence[str]) -> np.ndarray:
        """columns x groups 0/1 matrix: which group each input belongs to."""
        position = {c: j for j, c in enumerate(columns)}
        out = np.zeros((len(columns), len(self.members)))
        for g, members in enumerate(self.members):
            for c in members:
                out[position[c], g] = 1.0
        return out


def feature_groups(
    *,
    X: pd.DataFrame,
    numeric: Sequence[str],
    columns: Sequence[str],
    threshold: float = GROUP_CORRELATION,
    max_rows: int = GROUP_ROWS,
) -> FeatureGroups:
    """Group the numeric inputs of the training rows X whose |Spearman rho| >= threshold
    (complete linkage); every other input of `columns` is its own group. A group's lead (its
    first member, which its phrase starts from) is its member listed first in `columns`."""
    numeric = [c for c in columns if c in set(numeric)]
    groups: list[list[str]] = []
    if len(numeric) >= 2 and len(X) >= 3:
        sample = X[numeric]
        if len(sample) > max_rows:
            sample = sample.sample(max_rows, random_state=0)
        rho = sample.astype(np.float64).corr(method="spearman").abs().to_numpy()
        rho = np.where(np.isfinite(rho), rho, 0.0)
        np.fill_diagonal(rho, 1.0)
        distance = np.clip(1.0 - (rho + rho.T) / 2, 0.0, 1.0)
        np.fill_diagonal(distance, 0.0)
        tree = linkage(squareform(distance, checks=False), method="complete")
        labels = fcluster(tree, t=1.0 - threshold, criterion="distance")
        by_label: dict[int, list[str]] = {}
        for column, label in zip(numeric, labels, strict=True):
            by_label.setdefault(int(label), []).append(column)
        groups = [g for g in by_label.values() if len(g) > 1]
    grouped = {c: g for g in groups for c in g}
    members: list[tuple[str, ...]] = []
    placed: set[str] = set()
    for column in columns:
        if column in placed:
            continue
        group = grouped.get(column, [column])
        members.append(tuple(group))
        placed.update(group)
    return FeatureGroups(tuple(members), threshold)


@dataclass(frozen=True)
class Attributions:
    """Per-row attributions (rows x groups) in probability points against `baseline`."""

    values: np.ndarray
    baseline: float
    method: str  # "exact-linear", "exact-tree" or "sampled"
    errors: np.ndarray | None = None  # standard errors of a sampled method


def sampled_shapley(
    *,
    estimator: Any,
    sub: pd.DataFrame,
    typical: pd.DataFrame,
    base: np.ndarray,
    groups: Sequence[Sequence[int]],
    permutations: int = PERMUTATIONS,
    seed: int = SAMPLE_SEED,
    batch_rows: int = BATCH_ROWS,
) -> Attributions:
    """Antithetic permutation-sampled Shapley values of each group (positions in sub's columns)
    for the rows of `sub`, whose probabilities are `base`; `typical` is the one-row frame of
    the typical customer. See the module text for what is estimated and its error."""
    n, n_groups = len(sub), len(groups)
    baseline = float(estimator.predict_proba(typical)[:, 1][0])
    values = np.zeros((n, n_groups))
    if n == 0 or n_groups == 0:
        return Attributions(values, baseline, "sampled", np.zeros((n, n_groups)))
    rng = np.random.default_rng(seed)
    pairs = max(permutations // 2, 1)
    columns = list(sub.columns)
    group_of = np.zeros(len(columns), dtype=np.int64)
    for g, members in enumerate(groups):
        group_of[list(members)] = g
    actual = [sub[c].to_numpy() for c in columns]
    fill = [typical[c].to_numpy()[0] for c in columns]
    dtypes = [sub[c].dtype for c in columns]
    every = np.arange(n)
    # In float64: float32 probabilities (a float32 pipeline) would not telescope exactly.
    base64 = np.asarray(base, dtype=np.float64)
    # typical_at[i, g]: every input of group g holds its typical value in row i.
    typical_at = np.ones((n, n_groups), dtype=bool)
    for j in range(len(columns)):
        typical_at[:, group_of[j]] &= _is_typical(actual[j], fill[j])
    # Each row its own random orders of the groups: per pair one order and then its reverse.
    orders: list[np.ndarray] = []
    for _ in range(pairs):
        forward = np.argsort(rng.random((n, n_groups)), axis=1)
        orders += [forward, forward[:, ::-1]]
    # Every coalition the orders visit is known before any prediction (the step-th coalition
    # of an order is its first step+1 groups), so all of them are predicted together, in
    # calls of at most BATCH_ROWS rows, not one call per step. A row whose chosen group
    # already holds its typical values is unchanged by the switch: not asked again.
    moved_at = [
        [np.flatnonzero(~typical_at[every, order[:, step]]) for step in range(n_groups - 1)]
        for order in orders
    ]
    ask_row = np.concatenate([m for per_order in moved_at for m in per_order] + [every[:0]])
    ask_order = np.concatenate(
        [np.full(len(m), o) for o, per_order in enumerate(moved_at) for m in per_order]
        + [every[:0]]
    )
    ask_step = np.concatenate(
        [np.full(len(m), s) for per_order in moved_at for s, m in enumerate(per_order)]
        + [every[:0]]
    )
    # rank[o, i, g]: the step at which order o switches group g of row i.
    rank = np.stack([np.argsort(order, axis=1) for order in orders]).astype(np.int32)
    predicted = np.empty(len(ask_row))
    for first in range(0, len(ask_row), batch_rows):
        batch = slice(first, first + batch_rows)
        r = ask_row[batch]
        switched = rank[ask_order[batch], r] <= ask_step[batch][:, None]
        frame = pd.DataFrame(
            {
                c: pd.Series(
                    np.where(switched[:, group_of[j]], actual[j][r], fill[j]), dtype=dtypes[j]
                )
                for j, c in enumerate(columns)
            }
        )
        predicted[batch] = estimator.predict_proba(frame)[:, 1]
    per_pair = np.zeros((pairs, n, n_groups))
    offset = 0
    for o, order in enumerate(orders):
        previous = np.full(n, baseline)
        for step in range(n_groups):
            chosen = order[:, step]
            if step == n_groups - 1:
                current = base64
            else:
                moved = moved_at[o][step]
                current = previous.copy()
                current[moved] = predicted[offset : offset + len(moved)]
                offset += len(moved)
            per_pair[o // 2, every, chosen] += (current - previous) / 2
            previous = current
    values = per_pair.mean(axis=0)
    if pairs > 1:
        errors = per_pair.std(axis=0, ddof=1) / np.sqrt(pairs)
    else:
        errors = np.full((n, n_groups), np.nan)
    return Attributions(values, baseline, "sampled", errors)


def _is_typical(values: np.ndarray, typical: Any) -> np.ndarray:
    """Which values equal the typical one (missing equals missing)."""
    missing = pd.isna(values)
    if pd.isna(typical):
        return np.asarray(missing, dtype=bool)
    with np.errstate(invalid="ignore"):
        return np.asarray(~missing & (values == typical), dtype=bool)
