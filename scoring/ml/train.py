"""Train candidates out-of-fold, pick one by PR-AUC, calibrate it, choose a threshold.

Honesty rules this module keeps:
- every metric is out-of-fold (or out-of-time): a row is only ever scored by a model that
  did not see it;
- resampling lives inside the imblearn Pipeline, so it only touches training folds;
- the selected model's reported metrics are those of the *whole* final procedure, i.e.
  calibration nested inside each outer fold (CalibratedClassifierCV fits the pipeline on
  part of the outer-training data, resampling only that part, and calibrates on the
  untouched rest), so Brier score and log loss describe the probabilities we ship.
"""

from __future__ import annotations

import platform
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.inspection import permutation_importance
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from scoring.ml.drift import DriftReference, build_drift_reference
from scoring.ml.features import FeatureSpec
from scoring.ml.pipelines import Candidate, build_pipeline

CvScheme = Literal["stratified", "time"]
Split = tuple[np.ndarray, np.ndarray]

# Calibration: sigmoid (2 parameters) is stable on small data; isotonic is more flexible
# but overfits and creates score ties below a few tens of thousands of rows.
ISOTONIC_MIN_ROWS = 50_000
CALIBRATION_FOLDS = 3
CALIBRATION_BINS = 10
# Permutation importance is computed on at most this many held-out rows (speed).
IMPORTANCE_SAMPLE = 2_000
IMPORTANCE_REPEATS = 3


@dataclass(frozen=True)
class CandidateReport:
    name: str
    sampler: str
    classifier: str
    params: Mapping[str, Any]
    metrics: Mapping[str, Any]
    permutation_importance: Mapping[str, float]
    fit_seconds: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sampler": self.sampler,
            "classifier": self.classifier,
            "params": dict(self.params),
            "metrics": _json(self.metrics),
            "permutation_importance": {k: float(v) for k, v in self.permutation_importance.items()},
            "fit_seconds": round(self.fit_seconds, 3),
            "error": self.error,
        }


@dataclass(frozen=True)
class TrainingResult:
    selected: str
    estimator: Any  # fitted CalibratedClassifierCV around the selected imblearn Pipeline
    threshold: float
    threshold_method: str  # "max_f1" or "expected_value"
    metrics: Mapping[str, Any]  # nested out-of-fold metrics of the calibrated procedure
    candidates: tuple[CandidateReport, ...]
    spec: FeatureSpec
    feature_names: tuple[str, ...]
    library_versions: Mapping[str, str]
    training_summary: DriftReference
    reference_values: Mapping[str, Any]  # training medians / modes, used by explain
    calibration: str
    validation: Mapping[str, Any] = field(default_factory=dict)
    oof_probabilities: np.ndarray | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (everything except the fitted estimator and raw predictions)."""
        return {
            "selected": self.selected,
            "threshold": float(self.threshold),
            "threshold_method": self.threshold_method,
            "metrics": _json(self.metrics),
            "candidates": [c.to_dict() for c in self.candidates],
            "spec": self.spec.to_dict(),
            "feature_names": list(self.feature_names),
            "library_versions": dict(self.library_versions),
            "training_summary": self.training_summary.to_dict(),
            "reference_values": _json(self.reference_values),
            "calibration": self.calibration,
            "validation": _json(self.validation),
        }


def _json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if np.isfinite(f) else None
    return value


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("numpy", "pandas", "scipy", "scikit-learn", "imbalanced-learn", "skops"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "missing"
    return out


# ---- splits ---------------------------------------------------------------------------------


def make_splits(
    *,
    y: np.ndarray,
    cv: CvScheme = "stratified",
    n_splits: int = 5,
    random_state: int = 0,
    time_index: Sequence[Any] | np.ndarray | pd.Series | None = None,
    n_train: int | None = None,
) -> list[Split]:
    """(train positions, validation positions) pairs.

    - n_train given: one out-of-time split, rows [0, n_train) train and the rest validate
      (used when the caller passes X_valid/y_valid from a later cutoff).
    - cv="stratified": stratified K-fold with shuffling (snapshot labels).
    - cv="time": `time_index` holds each row's snapshot/cutoff date; for each of the last
      `n_splits` distinct dates, train on all earlier dates and validate on that date.
      The caller must space cutoffs so a training row's label window ends before the
      validation cutoff (horizon ≤ gap between cutoffs), or labels leak across time.
    """
    y = np.asarray(y)
    n = len(y)
    if n_train is not None:
        return [(np.arange(n_train), np.arange(n_train, n))]
    if cv == "stratified":
        folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
        return [(tr, va) for tr, va in folds.split(np.zeros(n), y)]
    if cv == "time":
        if time_index is None:
            raise ValueError('cv="time" needs time_index (each row\'s cutoff date)')
        times = pd.Series(pd.to_datetime(np.asarray(time_index), utc=True))
        periods = np.sort(times.unique())
        if len(periods) < 2:
            raise ValueError('cv="time" needs rows from at least two cutoff dates')
        splits = []
        for period in periods[max(1, len(periods) - n_splits) :]:
            train = np.flatnonzero((times < period).to_numpy())
            valid = np.flatnonzero((times == period).to_numpy())
            splits.append((train, valid))
        return splits
    raise ValueError(f"unknown cv scheme {cv!r}")


# ---- metrics -------------------------------------------------------------------------------


def _sorted_cumulative(
    y: np.ndarray, p: np.ndarray, gain: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct score t (descending): t, Σgain, TP and #flagged over rows p >= t."""
    order = np.argsort(-p, kind="stable")
    ps = p[order]
    # A threshold can only sit between distinct scores: keep the last row of each tie.
    last_of_tie = np.r_[ps[1:] != ps[:-1], True]
    flagged = (np.flatnonzero(last_of_tie) + 1).astype(np.float64)
    cum_gain = np.cumsum(gain[order])[last_of_tie]
    tp = np.cumsum(y[order])[last_of_tie]
    return ps[last_of_tie], cum_gain, tp, flagged


def best_f1_threshold(*, y: np.ndarray, p: np.ndarray) -> float:
    """Threshold (predict churn when p >= threshold) maximising F1 on the given predictions."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    ps, _, tp, flagged = _sorted_cumulative(y, p, np.zeros_like(p))
    f1 = 2 * tp / (flagged + y.sum())
    return float(ps[int(np.argmax(f1))])


def expected_value_threshold(
    *,
    y: np.ndarray,
    p: np.ndarray,
    offer_cost: float | np.ndarray,
    customer_value: float | np.ndarray,
    save_rate: float,
) -> tuple[float, float]:
    """Threshold maximising the saving of targeting everyone with p >= threshold.

    saving = Σ_targeted (y_i · customer_value_i · save_rate - offer_cost_i)
           = customer_value · save_rate · TP - offer_cost · (TP + FP)   (scalar inputs).
    A churner who is offered the incentive stays with probability `save_rate`; every offer
    costs `offer_cost`. Returns (threshold, saving); threshold 1.0 means nobody is worth it.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    value = np.broadcast_to(np.asarray(customer_value, dtype=np.float64), y.shape)
    cost = np.broadcast_to(np.asarray(offer_cost, dtype=np.float64), y.shape)
    gain = y * value * save_rate - cost
    ps, cum, _, _ = _sorted_cumulative(y, p, gain)
    best = int(np.argmax(cum))
    if cum[best] <= 0:
        return 1.0, 0.0
    return float(ps[best]), float(cum[best])


def evaluate_predictions(*, y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """Ranking, probability and decision metrics of predictions `p` for labels `y`."""
    y = np.asarray(y, dtype=np.int64)
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    n, positives = len(y), int(y.sum())
    pred = p >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = positives - tp
    tn = n - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n_top = max(int(np.ceil(0.1 * n)), 1)
    top = np.argsort(-p, kind="stable")[:n_top]
    base_rate = positives / n if n else 0.0
    top_rate = float(y[top].mean())
    clipped = np.clip(p, 1e-15, 1 - 1e-15)
    log_loss = float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)))
    bins = np.minimum((p * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    counts = np.bincount(bins, minlength=CALIBRATION_BINS)
    sum_p = np.bincount(bins, weights=p, minlength=CALIBRATION_BINS)
    sum_y = np.bincount(bins, weights=y, minlength=CALIBRATION_BINS)
    curve = [
        {
            "bin_low": b / CALIBRATION_BINS,
            "bin_high": (b + 1) / CALIBRATION_BINS,
            "mean_predicted": float(sum_p[b] / counts[b]),
            "fraction_positive": float(sum_y[b] / counts[b]),
            "count": int(counts[b]),
        }
        for b in range(CALIBRATION_BINS)
        if counts[b]
    ]
    both = 0 < positives < n
    return {
        "n": n,
        "positive_rate": base_rate,
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": log_loss,
        "threshold": float(threshold),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "top_decile_lift": top_rate / base_rate if base_rate else float("nan"),
        "top_decile_capture": float(y[top].sum()) / positives if positives else float("nan"),
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "calibration_curve": curve,
    }


# ---- training ------------------------------------------------------------------------------


def _fit_quietly(estimator: Any, X: pd.DataFrame, y: np.ndarray) -> Any:
    with warnings.catch_warnings():
        # Convergence chatter from LR/MLP on folds is expected and not actionable here.
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        from sklearn.exceptions import ConvergenceWarning

        warnings.simplefilter("ignore", category=ConvergenceWarning)
        return estimator.fit(X, y)


def calibrated(*, pipeline: Any, method: str, random_state: int) -> CalibratedClassifierCV:
    """The pipeline wrapped so each calibration fold resamples only its own training part."""
    return CalibratedClassifierCV(
        pipeline,
        method=method,
        cv=StratifiedKFold(n_splits=CALIBRATION_FOLDS, shuffle=True, random_state=random_state),
    )


def _oof(
    *,
    make: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    splits: list[Split],
) -> tuple[np.ndarray, float, Any]:
    p = np.full(len(y), np.nan)
    seconds = 0.0
    model = None
    for train, valid in splits:
        model = make()
        start = time.perf_counter()
        _fit_quietly(model, X.iloc[train], y[train])
        seconds += time.perf_counter() - start
        p[valid] = model.predict_proba(X.iloc[valid])[:, 1]
    return p, seconds, model


def _importance(
    *, model: Any, X: pd.DataFrame, y: np.ndarray, sample: int, random_state: int
) -> dict[str, float]:
    if sample <= 0 or len(np.unique(y)) < 2:
        return {}
    rng = np.random.default_rng(random_state)
    rows = rng.choice(len(y), size=min(sample, len(y)), replace=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = permutation_importance(
            model,
            X.iloc[rows],
            y[rows],
            scoring="average_precision",
            n_repeats=IMPORTANCE_REPEATS,
            random_state=random_state,
        )
    pairs = sorted(
        zip(X.columns, result.importances_mean, strict=True), key=lambda kv: kv[1], reverse=True
    )
    return {str(k): float(v) for k, v in pairs}


def reference_values(*, X: pd.DataFrame, spec: FeatureSpec) -> dict[str, Any]:
    """Typical value per feature: median (numeric) or most frequent category."""
    out: dict[str, Any] = {}
    for name in spec.numeric:
        value = X[name].median()
        out[name] = float(value) if pd.notna(value) else float("nan")
    for name in spec.categorical:
        modes = X[name].dropna().astype(object).mode()
        out[name] = str(modes.iloc[0]) if len(modes) else None
    return out


def train_and_select(
    *,
    X: pd.DataFrame,
    y: np.ndarray,
    spec: FeatureSpec,
    candidates: Sequence[Candidate],
    cv: CvScheme = "stratified",
    n_splits: int = 5,
    random_state: int = 0,
    offer_cost: float | np.ndarray | None = None,
    customer_value: float | np.ndarray | None = None,
    save_rate: float = 0.3,
    time_index: Sequence[Any] | np.ndarray | pd.Series | None = None,
    X_valid: pd.DataFrame | None = None,
    y_valid: np.ndarray | None = None,
    calibration: str = "auto",
    importance_sample: int = IMPORTANCE_SAMPLE,
) -> TrainingResult:
    """Evaluate `candidates` out-of-fold, select by PR-AUC, refit calibrated on all rows.

    Out-of-time evaluation: either pass `X_valid, y_valid` built at a later cutoff (models
    are trained on X and scored on X_valid; the final model is refit on both), or pass
    `cv="time"` with `time_index` (rows stacked from several cutoffs).
    `offer_cost` and `customer_value` (scalars or per-row arrays aligned with the evaluated
    rows) switch the threshold from max-F1 to max expected saving, see
    `expected_value_threshold`. `save_rate` is the share of targeted churners an offer keeps.
    """
    X = X.loc[:, list(spec.columns)]
    y = np.asarray(y, dtype=np.int64)
    if set(np.unique(y)) - {0, 1}:
        raise ValueError("y must contain only 0 and 1")
    n_train = None
    scheme: str = cv
    if X_valid is not None:
        if y_valid is None:
            raise ValueError("X_valid needs y_valid")
        n_train = len(X)
        X = pd.concat([X, X_valid.loc[:, list(spec.columns)]], axis=0)
        y = np.concatenate([y, np.asarray(y_valid, dtype=np.int64)])
        scheme = "holdout"
    splits = make_splits(
        y=y,
        cv=cv,
        n_splits=n_splits,
        random_state=random_state,
        time_index=time_index,
        n_train=n_train,
    )
    evaluated = np.unique(np.concatenate([va for _, va in splits]))
    y_eval = y[evaluated]
    value_args = offer_cost is not None and customer_value is not None

    reports: list[CandidateReport] = []
    best: tuple[float, Candidate] | None = None
    for candidate in candidates:
        base = {
            "name": candidate.name,
            "sampler": candidate.to_dict()["sampler"],
            "classifier": candidate.classifier,
            "params": candidate.to_dict()["params"],
        }
        try:
            p, seconds, last_model = _oof(
                make=lambda c=candidate: build_pipeline(
                    spec=spec, candidate=c, random_state=random_state
                ),
                X=X,
                y=y,
                splits=splits,
            )
            p_eval = p[evaluated]
            threshold = best_f1_threshold(y=y_eval, p=p_eval)
            metrics = evaluate_predictions(y=y_eval, p=p_eval, threshold=threshold)
            last_valid = splits[-1][1]
            importance = _importance(
                model=last_model,
                X=X.iloc[last_valid],
                y=y[last_valid],
                sample=importance_sample,
                random_state=random_state,
            )
        except Exception as exc:  # one broken recipe must not stop the run
            reports.append(
                CandidateReport(
                    **base, metrics={}, permutation_importance={}, fit_seconds=0.0, error=repr(exc)
                )
            )
            continue
        reports.append(
            CandidateReport(
                **base, metrics=metrics, permutation_importance=importance, fit_seconds=seconds
            )
        )
        score = metrics["pr_auc"]
        if np.isfinite(score) and (best is None or score > best[0]):
            best = (score, candidate)
    if best is None:
        errors = "; ".join(f"{r.name}: {r.error}" for r in reports)
        raise RuntimeError(f"no candidate could be trained ({errors})")
    chosen = best[1]

    method = calibration
    if method == "auto":
        method = "isotonic" if len(X) >= ISOTONIC_MIN_ROWS else "sigmoid"

    def make_calibrated() -> CalibratedClassifierCV:
        pipe = build_pipeline(spec=spec, candidate=chosen, random_state=random_state)
        return calibrated(pipeline=pipe, method=method, random_state=random_state)

    p_cal, cal_seconds, _ = _oof(make=make_calibrated, X=X, y=y, splits=splits)
    p_eval = p_cal[evaluated]
    saving = None
    if value_args:
        assert offer_cost is not None and customer_value is not None
        threshold, saving = expected_value_threshold(
            y=y_eval,
            p=p_eval,
            offer_cost=offer_cost,
            customer_value=customer_value,
            save_rate=save_rate,
        )
        threshold_method = "expected_value"
    else:
        threshold = best_f1_threshold(y=y_eval, p=p_eval)
        threshold_method = "max_f1"
    metrics = evaluate_predictions(y=y_eval, p=p_eval, threshold=threshold)
    metrics["fit_seconds"] = cal_seconds
    if saving is not None:
        metrics["expected_saving"] = saving
        metrics["save_rate"] = save_rate

    final = _fit_quietly(make_calibrated(), X, y)
    summary = build_drift_reference(X=X, spec=spec, scores=p_eval)
    return TrainingResult(
        selected=chosen.name,
        estimator=final,
        threshold=threshold,
        threshold_method=threshold_method,
        metrics=metrics,
        candidates=tuple(reports),
        spec=spec,
        feature_names=tuple(spec.columns),
        library_versions=library_versions(),
        training_summary=summary,
        reference_values=reference_values(X=X, spec=spec),
        calibration=method,
        validation={
            "scheme": scheme,
            "n_splits": len(splits),
            "random_state": random_state,
            "n_rows": len(X),
            "n_evaluated": len(evaluated),
            "positive_rate": float(y_eval.mean()),
        },
        oof_probabilities=p_eval,
    )
