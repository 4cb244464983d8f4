"""How well an uplift score ranks customers, with bootstrap intervals, beside random targeting
and targeting by churn risk on the same rows. Pure numpy/pandas/scikit-learn: no Django.

For rows sorted by score (best first; tied scores enter together), with cumulative treated /
control counts N_t(n), N_c(n) and outcome sums Y_t(n), Y_c(n) over the top n:

- Qini curve     Q(n) = Y_t(n) - Y_c(n) N_t(n) / N_c(n)   (incremental outcomes among the top n)
- uplift curve   U(n) = (Y_t(n) / N_t(n) - Y_c(n) / N_c(n)) n
- normalised Qini coefficient: (area under Q - random line) / (same for the perfect ranking);
  0 = random targeting, 1 = perfect (treated responders first, control responders last); the
  same as `models.qini_coefficient` and scikit-uplift's qini_auc_score(negative_effect=True).
- AUUC: the same normalisation of the area under the uplift curve (the perfect ranking is the
  Qini one).
- uplift at top k: treated rate - control rate among the top ceil(k n) of each arm separately
  (scikit-uplift's "by_group", = `models.uplift_at_k`).

Intervals: percentile bootstrap over rows (default 200 resamples, seeded). The resamples are
count weights, so every metric of every resample is a cumulative sum along the sorted rows:
one vectorised pass per block of resamples, memory bounded by `_CELLS_PER_BLOCK`. Every score
evaluated in one call sees the SAME resamples, so differences between two scores have a paired
interval (`paired_difference`).

Random targeting needs no score: its expected Qini and AUUC are 0 and its expected uplift at
any k is the overall uplift, so the "random" row is exact, with the overall uplift's interval.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.model_selection import train_test_split

from campaigns.uplift.models import (
    CONTROL_ARM,
    UPLIFT_METHODS,
    MultiActionUplift,
    fit_multi_action,
)

FloatArray = npt.NDArray[np.float64]
Weights = npt.NDArray[np.floating[Any]]  # bootstrap count weights: float32 (float64: points)
METRICS = ("qini", "auuc", "uplift_at_k")
RANDOM, RISK = "random", "risk"
CURVE_POINTS = 21  # 0 %, 5 %, … 100 % targeted: enough for a chart, small in a JSON column
# Resamples × rows per vectorised block: ~8 float arrays of this many cells are alive at once,
# so 2,000,000 cells keep a block near 130 MB whatever the validation size.
_CELLS_PER_BLOCK = 2_000_000


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class ScoreEvaluation:
    """One score's metrics on one set of rows: the point estimates, one draw per bootstrap
    resample of each metric, and the curves (point estimate) for a chart."""

    name: str
    k: float
    rows: int
    treated: int
    control: int
    point: dict[str, float]
    draws: dict[str, FloatArray]
    curve: dict[str, list[float]] = field(default_factory=dict)
    level: float = 0.95

    def interval(self, metric: str) -> Interval:
        return _interval(self.point[metric], self.draws[metric], self.level)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: qini, auuc and uplift_at_<k %> as {value, low, high}, and the curves."""
        at = f"uplift_at_{round(self.k * 100)}"
        return {
            "rows": self.rows,
            "treated": self.treated,
            "control": self.control,
            "qini": self.interval("qini").to_dict(),
            "auuc": self.interval("auuc").to_dict(),
            at: self.interval("uplift_at_k").to_dict(),
            "curve": self.curve,
        }


def _interval(value: float, draws: FloatArray, level: float) -> Interval:
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(draws, [tail, 100.0 - tail])
    return Interval(value=float(value), low=float(low), high=float(high))


def paired_difference(a: ScoreEvaluation, b: ScoreEvaluation, metric: str) -> Interval:
    """`a` minus `b` on `metric`, with the percentile interval of the per-resample differences.
    Both must come from one `evaluate_scores` call (the same rows and resamples)."""
    if a.rows != b.rows or len(a.draws[metric]) != len(b.draws[metric]):
        raise ValueError("paired difference needs two scores evaluated in the same call")
    return _interval(a.point[metric] - b.point[metric], a.draws[metric] - b.draws[metric], a.level)


def _arrays(
    y: npt.ArrayLike, treatment: npt.ArrayLike
) -> tuple[FloatArray, npt.NDArray[np.float64]]:
    outcome = np.asarray(y, dtype=np.float64)
    arm = np.asarray(treatment)
    if outcome.ndim != 1 or arm.ndim != 1:
        raise ValueError("y and treatment must be one-dimensional")
    if len(outcome) != len(arm):
        raise ValueError(f"y and treatment must have the same length ({len(outcome)}, {len(arm)})")
    if not np.isin(arm, [0, 1]).all():
        raise ValueError("treatment must contain only 0 and 1")
    if not np.isfinite(outcome).all():
        raise ValueError(
            f"y must be finite numbers; row {int(np.flatnonzero(~np.isfinite(outcome))[0])} is not"
        )
    arm = arm.astype(np.float64)
    if arm.sum() < 1 or (1 - arm).sum() < 1:
        raise ValueError("both arms (treatment 1 and 0) must be present")
    return outcome, arm


@dataclass(frozen=True)
class _Curves:
    """One ranking under a block of resamples (rows of every array): x = customers targeted,
    the Qini and uplift curves at the tie-group ends (with a leading 0), uplift at top k."""

    x: Weights
    qini: Weights
    uplift: Weights
    at_k: Weights | None


def _top_sum(count: Weights, total: Weights, ys: Weights, k: float) -> Weights:
    """Mean outcome among the top ceil(k × arm size) of one arm, from its cumulative weights
    `count` and outcomes `total` (ranked order). The row where the count first reaches the cut
    may be a resampled row counted several times: only the part inside the cut is taken."""
    # In float64 (0.3 × 1000 must not round up to 301), then back: whole numbers are exact.
    top = np.ceil(k * count[:, -1].astype(np.float64) - 1e-9).astype(count.dtype)
    first = np.minimum((count < top[:, None]).sum(axis=1), count.shape[1] - 1)
    rows = np.arange(count.shape[0])
    inside = total[rows, first] - (count[rows, first] - top) * ys[first]
    return np.asarray(inside / np.maximum(top, 1.0))


def _curves(
    weights: Weights,
    y: FloatArray,
    t: FloatArray,
    order: npt.NDArray[np.intp],
    cut: Any,
    k: float | None,
) -> _Curves:
    """Count weights (resamples × rows, in the original row order) seen through one ranking:
    five cumulative sums along the ranked rows give every metric of every resample."""
    w = weights[:, order]
    ys, ts = y[order].astype(w.dtype), t[order].astype(w.dtype)
    wt = w * ts
    n_t = np.cumsum(wt, axis=1)
    n_all = np.cumsum(w, axis=1)
    s_t = np.cumsum(wt * ys, axis=1)
    s_all = np.cumsum(w * ys, axis=1)
    del wt
    at_k = None
    if k is not None:
        n_c = n_all - n_t
        s_c = s_all - s_t
        at_k = _top_sum(n_t, s_t, ys, k) - _top_sum(n_c, s_c, ys, k)
    nt, n_x, y_t = n_t[:, cut], n_all[:, cut], s_t[:, cut]
    nc, y_c = n_x - nt, s_all[:, cut] - y_t
    rate_t = np.divide(y_t, nt, out=np.zeros_like(y_t), where=nt > 0)
    rate_c = np.divide(y_c, nc, out=np.zeros_like(y_c), where=nc > 0)
    scale = np.divide(nt, nc, out=np.zeros_like(nt), where=nc > 0)
    return _Curves(x=n_x, qini=y_t - y_c * scale, uplift=(rate_t - rate_c) * n_x, at_k=at_k)


def _tie_ends(sorted_scores: FloatArray) -> npt.NDArray[np.intp] | slice:
    """The last row of every group of tied scores; every row (a view, no copy) if none tie."""
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    return slice(None) if ends.size == sorted_scores.size else ends


def _area(curve: Weights, x: Weights) -> FloatArray:
    """Trapezoid area from the origin (0, 0), which the curves do not store."""
    first = 0.5 * x[:, 0] * curve[:, 0]
    return np.asarray(np.trapezoid(curve, x, axis=1) + first, dtype=np.float64)


def _normalised(area: FloatArray, perfect: FloatArray, random: FloatArray) -> FloatArray:
    span = perfect - random
    return np.divide(area - random, span, out=np.zeros_like(area), where=span != 0)


def _metrics(curves: _Curves, perfect: _Curves) -> dict[str, Weights]:
    end = curves.x[:, -1]
    assert curves.at_k is not None
    return {
        "qini": _normalised(
            _area(curves.qini, curves.x),
            _area(perfect.qini, perfect.x),
            0.5 * end * curves.qini[:, -1],
        ),
        "auuc": _normalised(
            _area(curves.uplift, curves.x),
            _area(perfect.uplift, perfect.x),
            0.5 * end * curves.uplift[:, -1],
        ),
        "uplift_at_k": curves.at_k,
    }


def _overall_uplift(weights: Weights, y: FloatArray, t: FloatArray) -> FloatArray:
    wt = weights * t.astype(weights.dtype)
    wc = weights - wt
    ys = y.astype(weights.dtype)
    return np.asarray((wt @ ys) / wt.sum(axis=1) - (wc @ ys) / wc.sum(axis=1), dtype=np.float64)


def _chart(
    x: FloatArray, qini: FloatArray, uplift: FloatArray, rows: int
) -> dict[str, list[float]]:
    """The point curves at 0, 5, … 100 % targeted, per customer of these rows (so a value of
    0.02 means 2 more outcomes per 100 customers of the whole population)."""
    share = np.linspace(0.0, 1.0, CURVE_POINTS)
    x, qini, uplift = np.r_[0.0, x], np.r_[0.0, qini], np.r_[0.0, uplift]
    return {
        "share": [round(float(s), 4) for s in share],
        "qini": [round(float(v), 6) for v in np.interp(share * rows, x, qini) / rows],
        "uplift": [round(float(v), 6) for v in np.interp(share * rows, x, uplift) / rows],
    }


def evaluate_scores(
    *,
    y: npt.ArrayLike,
    treatment: npt.ArrayLike,
    scores: Mapping[str, npt.ArrayLike],
    k: float = 0.3,
    n_boot: int = 200,
    seed: int = 42,
    level: float = 0.95,
    include_random: bool = True,
) -> dict[str, ScoreEvaluation]:
    """Each score (higher = target first) on the same rows and the same `n_boot` resamples,
    plus a "random" row (exact expectation of random targeting) unless `include_random` is
    False. A churn risk is just another score here (named "risk" by `uplift_report`)."""
    outcome, arm = _arrays(y, treatment)
    n = outcome.size
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must be in (0, 1], got {k}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    rankings: dict[str, tuple[npt.NDArray[np.intp], Any]] = {}
    for name, values in scores.items():
        score = np.asarray(values, dtype=np.float64)
        if score.shape != (n,):
            raise ValueError(f"score {name!r} has {score.size} values for {n} rows")
        if not np.isfinite(score).all():
            raise ValueError(f"score {name!r} has missing or infinite values")
        order = np.argsort(-score, kind="mergesort")
        rankings[name] = (order, _tie_ends(score[order]))
    perfect_score = outcome * arm - outcome * (1 - arm)
    perfect_order = np.argsort(-perfect_score, kind="mergesort")
    perfect_ranking = (perfect_order, _tie_ends(perfect_score[perfect_order]))

    def block(weights: Weights) -> dict[str, dict[str, Weights]]:
        perfect = _curves(weights, outcome, arm, *perfect_ranking, k=None)
        out = {
            name: _metrics(_curves(weights, outcome, arm, *ranking, k=k), perfect)
            for name, ranking in rankings.items()
        }
        if include_random:
            zeros = np.zeros(weights.shape[0])
            out[RANDOM] = {
                "qini": zeros,
                "auuc": zeros,
                "uplift_at_k": _overall_uplift(weights, outcome, arm),
            }
        return out

    point = {
        name: {m: float(v[0]) for m, v in got.items()}
        for name, got in block(np.ones((1, n))).items()
    }
    draws: dict[str, dict[str, list[Weights]]] = {name: {m: [] for m in METRICS} for name in point}
    rng = np.random.default_rng(seed)
    per_block = max(1, _CELLS_PER_BLOCK // n)
    done = 0
    while done < n_boot:
        b = min(per_block, n_boot - done)
        picks = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        # float32 halves the memory traffic; counts and binary outcome sums stay exact (< 2^24)
        # and the point estimates above are computed in float64.
        weights = np.bincount(picks.ravel(), minlength=b * n).reshape(b, n).astype(np.float32)
        del picks
        for name, got in block(weights).items():
            for metric, values in got.items():
                draws[name][metric].append(values)
        done += b
    curves = {}
    for name, (order, cut) in rankings.items():
        drawn = _curves(np.ones((1, n)), outcome, arm, order, cut, k=None)
        curves[name] = _chart(drawn.x[0], drawn.qini[0], drawn.uplift[0], n)
    treated = int(arm.sum())
    if include_random:
        # Straight lines to the curves' common end: Q = treated × overall uplift, U = n × it.
        overall = point[RANDOM]["uplift_at_k"]
        share = np.linspace(0.0, 1.0, CURVE_POINTS)
        curves[RANDOM] = {
            "share": [round(float(s), 4) for s in share],
            "qini": [round(float(v), 6) for v in share * overall * treated / n],
            "uplift": [round(float(v), 6) for v in share * overall],
        }
    return {
        name: ScoreEvaluation(
            name=name,
            k=k,
            rows=n,
            treated=treated,
            control=n - treated,
            point=point[name],
            draws={m: np.concatenate(v).astype(np.float64) for m, v in draws[name].items()},
            curve=curves[name],
            level=level,
        )
        for name in point
    }


# --- Several actions against the shared control arm, and the champion/challenger comparison --


@dataclass(frozen=True)
class ActionsEvaluation:
    """`reports`: JSON-ready rows, one per (action, score) — the models' scores, "random" and,
    when given, "risk"; `evaluations[(action, name)]`: the ScoreEvaluation behind each row."""

    reports: list[dict[str, Any]]
    evaluations: dict[tuple[str, str], ScoreEvaluation]


def evaluate_actions(
    *,
    predictions: Mapping[str, pd.DataFrame],
    arm: npt.ArrayLike,
    outcome: npt.ArrayLike,
    risk: npt.ArrayLike | None = None,
    kind: str = "binary",
    k: float = 0.3,
    n_boot: int = 200,
    seed: int = 42,
) -> ActionsEvaluation:
    """Each model's predicted uplift (name → rows × actions, rows aligned with `arm`) per
    action, on that action's rows plus every control row, beside random targeting and
    targeting by `risk` (churn probability: the riskiest first, customers without one last).
    All scores of one action share
    the resamples, so `paired_difference` between any two of them is paired."""
    arms = np.asarray(arm, dtype=object)
    y = np.asarray(outcome, dtype=np.float64)
    if len(arms) != len(y):
        raise ValueError(f"arm and outcome must have the same length ({len(arms)}, {len(y)})")
    risk_values = None if risk is None else np.asarray(risk, dtype=np.float64)
    if risk_values is not None and len(risk_values) != len(arms):
        raise ValueError(f"risk has {len(risk_values)} values for {len(arms)} rows")
    control = arms == CONTROL_ARM
    actions = sorted({str(a) for a in arms[~control]})
    for name, frame in predictions.items():
        if len(frame) != len(arms):
            raise ValueError(f"predictions of {name!r} have {len(frame)} rows for {len(arms)}")
        missing = [a for a in actions if a not in frame.columns]
        if missing:
            raise ValueError(f"predictions of {name!r} lack actions {missing}")
    at = f"uplift_at_{round(k * 100)}"
    reports: list[dict[str, Any]] = []
    evaluations: dict[tuple[str, str], ScoreEvaluation] = {}
    for action in actions:
        rows = control | (arms == action)
        scores: dict[str, FloatArray] = {
            name: frame[action].to_numpy(dtype=np.float64)[rows]
            for name, frame in predictions.items()
        }
        if risk_values is not None:
            scores[RISK] = _ranked_last_if_missing(risk_values[rows])
        got = evaluate_scores(
            y=y[rows],
            treatment=(arms[rows] == action).astype(np.int64),
            scores=scores,
            k=k,
            n_boot=n_boot,
            seed=seed,
        )
        for name, evaluation in got.items():
            evaluations[(action, name)] = evaluation
            row: dict[str, Any] = {
                "method": name,
                "action": action,
                "outcome": kind,
                **evaluation.to_dict(),
            }
            if name not in (RANDOM, RISK):
                row["vs_random"] = {
                    at: paired_difference(evaluation, got[RANDOM], "uplift_at_k").to_dict()
                }
                if RISK in got:
                    row["vs_risk"] = {
                        "qini": paired_difference(evaluation, got[RISK], "qini").to_dict(),
                        at: paired_difference(evaluation, got[RISK], "uplift_at_k").to_dict(),
                    }
            reports.append(row)
    return ActionsEvaluation(reports=reports, evaluations=evaluations)


def _ranked_last_if_missing(risk: FloatArray) -> FloatArray:
    """Customers without a churn score come last when targeting by risk."""
    missing = ~np.isfinite(risk)
    if not missing.any():
        return risk
    floor = float(np.min(risk[~missing])) - 1.0 if (~missing).any() else 0.0
    return np.where(missing, floor, risk)


def validation_split(
    *, arm: npt.ArrayLike, outcome: npt.ArrayLike, validation_share: float, seed: int
) -> npt.NDArray[np.bool_]:
    """True for the validation rows: a share of every arm × outcome cell (scikit-learn's
    stratified shuffle split, so the same seed gives the same rows)."""
    arms = np.asarray(arm, dtype=object).astype(str)
    y = np.asarray(outcome)
    if not 0.0 < validation_share < 1.0:
        raise ValueError(f"validation_share must be between 0 and 1, got {validation_share}")
    strata = np.char.add(np.char.add(arms, "|"), y.astype(str))
    cells, counts = np.unique(strata, return_counts=True)
    small = [
        "arm {!r} with outcome {} has {}".format(*str(cell).split("|", 1), count)
        for cell, count in zip(cells, counts, strict=True)
        if count < 2
    ]
    if small:
        raise ValueError(
            "every arm × outcome cell needs at least 2 rows to split; " + ", ".join(small)
        )
    positions = np.arange(len(y))
    _train, valid = train_test_split(
        positions, test_size=validation_share, random_state=seed, stratify=strata
    )
    mask = np.zeros(len(y), dtype=bool)
    mask[valid] = True
    return mask


def validation_key(ids: Sequence[Any] | pd.Index) -> str:
    """sha256 of the sorted validation row ids: equal keys = compared on the same rows."""
    text = "\n".join(sorted(str(i) for i in ids))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class MethodComparison:
    """`best`: the method with the highest mean normalised Qini over actions on the validation
    rows; `model`: that method refitted on ALL rows; `reports`: every method's, random's and
    risk's rows (`evaluate_actions`), for the retained outcome and, when revenue was given,
    for revenue too (`"outcome": "revenue"`); `validation_key`: see `validation_key`.
    `revenue_best` / `revenue_model`: the same choice for revenue (None without revenue)."""

    best: str
    model: MultiActionUplift
    reports: list[dict[str, Any]]
    validation_key: str
    mean_qini: dict[str, float] = field(default_factory=dict)
    revenue_best: str | None = None
    revenue_model: MultiActionUplift | None = None
    validation_rows: int = 0
    training_rows: int = 0
    evaluations: dict[tuple[str, str, str], ScoreEvaluation] = field(default_factory=dict)


def _choose(
    methods: Sequence[str], evaluations: Mapping[tuple[str, str], ScoreEvaluation]
) -> tuple[str, dict[str, float]]:
    mean = {
        m: float(np.mean([e.point["qini"] for (_a, name), e in evaluations.items() if name == m]))
        for m in methods
    }
    return max(methods, key=lambda m: mean[m]), mean  # ties: the first in `methods`


def compare_methods(
    *,
    features: pd.DataFrame,
    arm: npt.ArrayLike,
    outcome: npt.ArrayLike,
    revenue: npt.ArrayLike | None = None,
    risk: npt.ArrayLike | None = None,
    methods: Sequence[str] = ("t_learner", "dr_learner", "class_transformation"),
    validation_share: float = 0.5,
    seed: int = 42,
    n_boot: int = 200,
    k: float = 0.3,
    base: str = "linear",
) -> MethodComparison:
    """Champion/challenger on one split: each method is fitted on the training rows and
    evaluated per action on the validation rows (stratified on arm × outcome); the best by
    mean normalised Qini is refitted on every row. `risk`: churn probability per row (the
    risk-targeting comparison); `revenue`: revenue per row (models of the revenue uplift)."""
    unknown = [m for m in methods if m not in UPLIFT_METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be among {', '.join(UPLIFT_METHODS)}; got {unknown}")
    arms = np.asarray(arm, dtype=object)
    y = np.asarray(outcome)
    if not len(features) == len(arms) == len(y):
        raise ValueError(
            f"features, arm and outcome must have the same length; got {len(features)}, "
            f"{len(arms)} and {len(y)}"
        )
    revenue_values = None if revenue is None else np.asarray(revenue, dtype=np.float64)
    if revenue_values is not None and len(revenue_values) != len(y):
        raise ValueError(f"revenue has {len(revenue_values)} values for {len(y)} rows")
    risk_values = None if risk is None else np.asarray(risk, dtype=np.float64)
    if risk_values is not None and len(risk_values) != len(y):
        raise ValueError(f"risk has {len(risk_values)} values for {len(y)} rows")
    valid = validation_split(arm=arms, outcome=y, validation_share=validation_share, seed=seed)
    train = ~valid
    x_train, x_valid = features.iloc[np.flatnonzero(train)], features.iloc[np.flatnonzero(valid)]
    valid_risk = None if risk_values is None else risk_values[valid]
    targets: list[tuple[str, npt.ArrayLike]] = [("binary", y)]
    if revenue_values is not None:
        targets.append(("revenue", revenue_values))
    reports: list[dict[str, Any]] = []
    evaluations: dict[tuple[str, str, str], ScoreEvaluation] = {}
    chosen: dict[str, tuple[str, dict[str, float]]] = {}
    for kind, target in targets:
        target_array = np.asarray(target)
        predictions = {
            method: fit_multi_action(
                method=method,  # type: ignore[arg-type]
                features=x_train,
                arm=arms[train],
                outcome=target_array[train],
                kind=kind,  # type: ignore[arg-type]
                base=base,  # type: ignore[arg-type]
                seed=seed,
            ).predict_uplift(x_valid)
            for method in methods
        }
        got = evaluate_actions(
            predictions=predictions,
            arm=arms[valid],
            outcome=target_array[valid],
            risk=valid_risk,
            kind=kind,
            k=k,
            n_boot=n_boot,
            seed=seed,
        )
        reports += got.reports
        evaluations.update({(kind, a, n): e for (a, n), e in got.evaluations.items()})
        chosen[kind] = _choose(methods, got.evaluations)

    def refit(kind: str, target: npt.ArrayLike) -> MultiActionUplift:
        return fit_multi_action(
            method=chosen[kind][0],  # type: ignore[arg-type]
            features=features,
            arm=arms,
            outcome=target,
            kind=kind,  # type: ignore[arg-type]
            base=base,  # type: ignore[arg-type]
            seed=seed,
        )

    return MethodComparison(
        best=chosen["binary"][0],
        model=refit("binary", y),
        reports=reports,
        validation_key=validation_key(features.index[valid]),
        mean_qini=chosen["binary"][1],
        revenue_best=chosen["revenue"][0] if revenue_values is not None else None,
        revenue_model=refit("revenue", revenue_values) if revenue_values is not None else None,
        validation_rows=int(valid.sum()),
        training_rows=int(train.sum()),
        evaluations=evaluations,
    )
