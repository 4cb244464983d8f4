"""Closed-form reasons for linear models (used by `scoring.ml.explain`).

A logistic regression after column-wise preprocessing (optionally several, averaged by
`CalibratedClassifierCV`) decides by w·z + b over the transformed columns z. Setting one input
to its typical value changes only the transformed columns that input feeds, so each perturbed
decision is the actual one minus w·(z - z_typical) over those columns, and the calibrators map
the perturbed decisions to probabilities exactly as `predict_proba` would: the perturbation
method's numbers without one prediction per (row, input). Which transformed columns each input
feeds is found by probing the fitted transformers; `scoring.ml.explain` checks the results
against `predict_proba` and the perturbation method on a sample of every chunk and falls back
when they differ (a transformer that mixes columns, a calibrator this does not know).
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression

from scoring.ml.transforms import transform_steps

# Rows of each chunk on which the closed form is checked (against predict_proba here, against
# the perturbation method in explain), and the largest difference in probability allowed.
CHECK_ROWS = 200
CHECK_TOLERANCE = 1e-7
# Largest transformed matrix (all rows x all members' columns) the closed form may hold.
MAX_BYTES = 1 << 30
# Most values of a numeric input tried when probing which transformed columns it feeds.
PROBE_VALUES = 256

logger = logging.getLogger(__name__)


M = TypeVar("M")


@dataclass(frozen=True)
class LinearMember:
    """One linear model of an estimator: p = link(transform(X) @ coef + intercept)."""

    steps: tuple[Any, ...]  # fitted transformers before the model (samplers left out)
    coef: np.ndarray
    intercept: float
    link: Callable[[np.ndarray], np.ndarray]

    def transform(self, X: pd.DataFrame, distinct: dict[str, Any] | None = None) -> np.ndarray:
        return transform_steps(self.steps, X, distinct)


def _linear_pipeline(pipeline: Any) -> tuple[tuple[Any, ...], np.ndarray, float] | None:
    steps = getattr(pipeline, "steps", None)
    if not steps:
        return None
    final = steps[-1][1]
    if not isinstance(final, LogisticRegression) or len(getattr(final, "classes_", ())) != 2:
        return None
    transformers = tuple(
        step
        for _, step in steps[:-1]
        if step not in (None, "passthrough") and not hasattr(step, "fit_resample")
    )
    if not all(hasattr(step, "transform") for step in transformers):
        return None
    return transformers, final.coef_[0].astype(np.float64), float(final.intercept_[0])


def calibrated_members(
    estimator: CalibratedClassifierCV, member: Callable[[Any, Callable[..., Any]], M | None]
) -> list[M] | None:
    """The members of a calibrated average, each `member(fitted estimator, calibrator's link)`
    (None when the member is not of the kind asked); None unless every member is one, with a
    sigmoid or isotonic calibrator of its own."""
    members = []
    for calibrated in getattr(estimator, "calibrated_classifiers_", ()):
        if calibrated.method not in ("sigmoid", "isotonic") or len(calibrated.calibrators) != 1:
            return None
        one = member(calibrated.estimator, calibrated.calibrators[0].predict)
        if one is None:
            return None
        members.append(one)
    return members or None


def linear_members(estimator: Any) -> list[LinearMember] | None:
    """The linear models whose calibrated average is `estimator`, or None if it is not one."""
    if isinstance(estimator, CalibratedClassifierCV):

        def member(fitted: Any, link: Callable[..., Any]) -> LinearMember | None:
            linear = _linear_pipeline(fitted)
            return LinearMember(*linear, link=link) if linear else None

        return calibrated_members(estimator, member)
    linear = _linear_pipeline(estimator)
    return [LinearMember(*linear, link=expit)] if linear else None


def _typed_rows(sub: pd.DataFrame, values: list[list[Any]]) -> pd.DataFrame:
    """Rows built from per-column value lists, each column with `sub`'s dtype."""
    return pd.DataFrame(
        {c: pd.Series(v, dtype=sub[c].dtype) for c, v in zip(sub.columns, values, strict=True)}
    )


def _apply_link(member: LinearMember, decision: np.ndarray) -> np.ndarray:
    p = np.asarray(member.link(decision.ravel()), dtype=np.float64).reshape(decision.shape)
    p[(p > 1.0) & (p <= 1.0 + 1e-5)] = 1.0  # as CalibratedClassifierCV does
    return p


@dataclass(frozen=True)
class LinearScores:
    """A linear estimator's transformed rows and decisions, kept for the reasons."""

    members: list[LinearMember]
    transformed: list[np.ndarray]  # per member: rows x transformed columns
    decisions: list[np.ndarray]
    # The closed form gives predict_proba's probabilities to the last bits (not just within
    # the check's tolerance, as when a transformer computes in float32).
    exact: bool = False
    # predict_proba of the typical row, when it was checked along with the sample.
    typical_probability: float | None = None

    @classmethod
    def of(cls, members: list[LinearMember], X: pd.DataFrame) -> LinearScores:
        distinct: dict[str, Any] = {}  # X's distinct rows, found once for every member
        transformed = [member.transform(X, distinct) for member in members]
        decisions = [
            Z @ member.coef + member.intercept
            for Z, member in zip(transformed, members, strict=True)
        ]
        return cls(members, transformed, decisions)

    def probability(self) -> np.ndarray:
        total = sum(
            (_apply_link(m, d) for m, d in zip(self.members, self.decisions, strict=True)),
            np.zeros(len(self.decisions[0])),
        )
        return total / len(self.members)

    def rows(self, rows: np.ndarray) -> LinearScores:
        return LinearScores(
            self.members,
            [Z[rows] for Z in self.transformed],
            [d[rows] for d in self.decisions],
            self.exact,
            self.typical_probability,
        )


def sample_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows to check a closed form on: evenly spread, plus each numeric input's smallest and
    largest row (rare values live there)."""
    n = len(frame)
    spread = np.linspace(0, n - 1, min(n, CHECK_ROWS)).astype(np.int64)
    numeric = frame.select_dtypes("number").to_numpy(dtype=np.float64)
    lowest = np.argmin(np.where(np.isnan(numeric), np.inf, numeric), axis=0)
    highest = np.argmax(np.where(np.isnan(numeric), -np.inf, numeric), axis=0)
    return np.unique(np.concatenate([spread, lowest, highest]).astype(np.int64))


def linear_scores(
    estimator: Any, X: pd.DataFrame, typical: pd.DataFrame | None = None
) -> LinearScores | None:
    """The closed form of a linear estimator over X, if it reproduces `predict_proba` on a
    sample of rows (and the transformed rows fit in memory); else None. The one-row frame
    `typical`, if given, is predicted in the same call (`typical_probability`)."""
    members = linear_members(estimator) if len(X) else None
    if members is None:
        return None
    width = sum(len(m.coef) for m in members)
    if len(X) * width * 8 > MAX_BYTES:
        return None
    try:
        scores = LinearScores.of(members, X)
    except (ValueError, TypeError) as exc:
        logger.info("reasons: linear shortcut not usable (%s); perturbing instead", exc)
        return None
    typical = typical.astype(X.dtypes.to_dict()) if typical is not None else None
    typical_key = _row_key(typical) if typical is not None else None
    weights = tuple((m.coef.tobytes(), float(m.intercept)) for m in members)
    remembered = _VERIFIED.get(estimator)
    verified = remembered[1] if remembered is not None and remembered[0] == weights else None
    if verified is not None and (typical_key is None or typical_key in verified):
        known = verified.get(typical_key) if typical_key is not None else None
        return dataclasses.replace(scores, exact=True, typical_probability=known)
    sample = sample_rows(X)
    checked = X.iloc[sample]
    if typical is not None:
        checked = pd.concat([checked, typical], ignore_index=True)
    expected = estimator.predict_proba(checked)[:, 1]
    typical_probability = float(expected[-1]) if typical is not None else None
    expected = expected[: len(sample)]
    difference = np.max(np.abs(scores.rows(sample).probability() - expected))
    if difference > CHECK_TOLERANCE:
        logger.warning("reasons: linear shortcut disagrees with predict_proba; perturbing")
        return None
    exact = bool(difference <= 1e-12)
    if exact:
        if verified is None:
            verified = {}
            _VERIFIED[estimator] = (weights, verified)
        if typical_key is not None and typical_probability is not None:
            verified[typical_key] = typical_probability
    return dataclasses.replace(scores, exact=exact, typical_probability=typical_probability)


# Per loaded estimator whose closed form reproduced `predict_proba` exactly on a chunk's check
# rows: its members' weights then (the same estimator object fitted again is checked again)
# and the typical rows' probabilities it gave (by `_row_key`). The closed form is the
# estimator's own fitted transformers, weights and calibrators, so what held on one chunk's
# sample (evenly spread, with each input's extremes) holds on the next; checking every chunk
# cost a `predict_proba` of three pipelines per chunk (the closed form of a 50,000-row bench
# chunk: 117 ms with it, 96 ms without). A transformer that depends on the batch fails the
# first check (the sample is transformed apart from its chunk), so it is never remembered.
_VERIFIED: weakref.WeakKeyDictionary[
    Any, tuple[tuple[tuple[bytes, float], ...], dict[tuple[Any, ...], float]]
] = weakref.WeakKeyDictionary()


def _row_key(frame: pd.DataFrame) -> tuple[Any, ...]:
    """A one-row frame as a hashable key (its columns, dtypes and values; NaN as a marker)."""
    values = tuple(
        ("nan",) if isinstance(v, float | np.floating) and np.isnan(v) else v
        for v in frame.iloc[0].tolist()
    )
    return (tuple(frame.columns), tuple(str(t) for t in frame.dtypes), values)


def _probe_frame(sub: pd.DataFrame, fills: list[Any]) -> tuple[pd.DataFrame, np.ndarray]:
    """Probe rows: the typical row, then per input a few rows with only that input changed;
    and the input each probe row (after the first) changes."""
    columns = list(sub.columns)
    m = len(columns)
    # Probes: the typical row, then per input a few rows with only that input changed.
    probe_values: list[list[Any]] = [[f] for f in fills]
    owner = [-1]
    for j, column in enumerate(columns):
        observed = pd.unique(sub[column].to_numpy())
        if sub[column].dtype.kind == "f":
            # Under a column-wise transform, probing with every value the rows hold finds
            # every transformed column that moves; many distinct values are thinned to
            # quantiles (with the extremes), and the sample check guards the rest.
            finite = np.sort(observed[np.isfinite(observed.astype(np.float64))])
            if len(finite) > PROBE_VALUES:
                finite = np.unique(np.quantile(finite, np.linspace(0, 1, PROBE_VALUES)))
            tries = [np.nan, float(fills[j]) + 1.0, *finite.tolist()]
        else:
            tries = [None, *observed]
        for value in tries:
            for k in range(m):
                probe_values[k].append(value if k == j else fills[k])
            owner.append(j)
    return _typed_rows(sub, probe_values), np.asarray(owner)


def _feeds(
    member: Any, probes: pd.DataFrame, owners: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """(the typical row transformed, feeds[t, j]: transformed column t moves with input j);
    `member` is anything with a `transform` of frames (a linear or a tree member)."""
    Zp = member.transform(probes)
    typical = Zp[0]
    changed = ~np.isclose(Zp[1:], typical, rtol=0.0, atol=0.0, equal_nan=True)
    feeds = np.zeros((Zp.shape[1], m), dtype=bool)
    for j in range(m):
        feeds[:, j] = changed[owners[1:] == j].any(axis=0)
    return typical, feeds


# Largest difference allowed between a member's decision change and its inputs' log-odds
# attributions summed (a transformer mixing inputs breaks it: the sampled method is used).
ADDITIVE_TOLERANCE = 1e-8


# What probing found per fitted member (keyed by its last transformer, which lives as long as
# the loaded estimator): what it was found for (`_member_key`), the typical row transformed,
# and which transformed columns each input feeds (the union over every chunk's probes).
_FEEDS: weakref.WeakKeyDictionary[Any, tuple[tuple[str, ...], np.ndarray, np.ndarray]] = (
    weakref.WeakKeyDictionary()
)


def _known_feeds(member: LinearMember, fills: list[Any]) -> tuple[np.ndarray, np.ndarray] | None:
    key = member.steps[-1] if member.steps else None
    known = _FEEDS.get(key) if key is not None else None
    if known is None or known[0] != _member_key(member, fills):
        return None
    return known[1], known[2]


def _member_key(member: LinearMember, fills: list[Any]) -> tuple[str, ...]:
    """What the remembered map was found for: the typical row's values (NaN equals NaN here)
    and the member's weights (the same transformer objects fitted again give other ones)."""
    return (*map(repr, fills), member.coef.tobytes().hex(), repr(member.intercept))


def _remember_feeds(
    member: LinearMember, fills: list[Any], typical: np.ndarray, feeds: np.ndarray
) -> None:
    if member.steps:
        _FEEDS[member.steps[-1]] = (_member_key(member, fills), typical, feeds)


def _member_phi(
    *,
    member: LinearMember,
    Z: np.ndarray,
    decision: np.ndarray,
    sub: pd.DataFrame,
    fills: list[Any],
    probed: Callable[[], tuple[pd.DataFrame, np.ndarray]],
) -> tuple[np.ndarray, float] | None:
    """One member's log-odds attribution per input (rows x inputs) and its typical decision;
    None when its decision is not a sum over inputs.

    Which transformed columns each input feeds is found by probing (`_probe_frame`), once per
    loaded model: a later chunk reuses it, and probes again only when the reused map leaves a
    moving column unattributed (a category or a value range the earlier probes never hit:
    the sum check below sees it), adding what it finds. Probing is the same for every chunk
    otherwise, and cost a quarter of a chunk's reasons."""
    m = len(sub.columns)
    known = _known_feeds(member, fills)
    for attempt in ("known", "probed"):
        if attempt == "known":
            if known is None:
                continue
            typical, feeds = known
        else:
            probes, owners = probed()
            typical, found = _feeds(member, probes, owners, m)
            feeds = found if known is None else (found | known[1])
            if (feeds.sum(axis=1) > 1).any():
                return None  # one transformed column fed by two inputs: not additive per input
            _remember_feeds(member, fills, typical, feeds)
        phi = ((Z - typical) * member.coef) @ feeds.astype(np.float64)
        d_typical = float(typical @ member.coef + member.intercept)
        delta = decision - d_typical
        scale_tol = ADDITIVE_TOLERANCE * max(1.0, float(np.max(np.abs(delta), initial=0.0)))
        if np.max(np.abs(phi.sum(axis=1) - delta), initial=0.0) <= scale_tol:
            return phi, d_typical
    return None


def linear_shapley(
    *, scores: LinearScores, sub: pd.DataFrame, fills: list[Any]
) -> tuple[np.ndarray, float] | None:
    """Exact Shapley values of each input of `sub` (rows x inputs, in probability points)
    against the typical row (`fills`), and that row's probability (the baseline); None when
    the decision is not a sum over inputs (a transformer mixes them).

    Per member: phi_j = w·(z - z_typical) over the transformed columns input j feeds, in
    log-odds, mapped to probability by the proportional rule (`scoring.ml.shapley`).
    """
    probes: list[tuple[pd.DataFrame, np.ndarray]] = []

    def probed() -> tuple[pd.DataFrame, np.ndarray]:
        if not probes:  # built once per call, for whichever member needs it
            probes.append(_probe_frame(sub, fills))
        return probes[0]

    m = len(sub.columns)
    total = np.zeros((len(sub), m))
    baseline = 0.0
    for member, Z, decision in zip(
        scores.members, scores.transformed, scores.decisions, strict=True
    ):
        found = _member_phi(
            member=member, Z=Z, decision=decision, sub=sub, fills=fills, probed=probed
        )
        if found is None:
            return None
        phi, d_typical = found
        delta = decision - d_typical
        p = _apply_link(member, decision)
        p_typical = float(_apply_link(member, np.asarray([d_typical]))[0])
        # The proportional rule; where the decisions (nearly) agree, the link's slope at d.
        small = np.abs(delta) < 1e-9
        ratio = (p - p_typical) / np.where(small, 1.0, delta)
        if small.any():
            eps, near = 1e-6, decision[small]
            ratio[small] = (_apply_link(member, near + eps) - _apply_link(member, near - eps)) / (
                2 * eps
            )
        mapped = phi * ratio[:, None]
        # Rows whose decisions agree to the last bits: put the rounding residue on the
        # largest attribution so the sum is exact.
        residue = (p - p_typical) - mapped.sum(axis=1)
        biggest = np.argmax(np.abs(mapped), axis=1) if m else np.zeros(0, dtype=np.int64)
        mapped[np.arange(len(sub)), biggest] += residue
        total += mapped
        baseline += p_typical
    k = len(scores.members)
    return total / k, baseline / k
