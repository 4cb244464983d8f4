"""Train candidates out-of-fold, pick one by PR-AUC, calibrate it, choose a threshold.

Honesty rules this module keeps:
- every metric is out-of-fold (or out-of-time): a row is only ever scored by a model that
  did not see it;
- resampling lives inside the imblearn Pipeline, so it only touches training folds;
- the selected model's reported metrics are those of the *whole* final procedure, i.e.
  calibration nested inside each outer fold (CalibratedClassifierCV fits the pipeline on
  part of the outer-training data, resampling only that part, and calibrates on the
  untouched rest), so Brier score and log loss describe the probabilities we ship;
- candidate and threshold selection are nested: the evaluated rows are cut into assessment
  folds, and each fold's rows are scored by the candidate and cut at the threshold chosen on
  the *other* folds' out-of-fold predictions, so the reported F1, precision and recall (and
  ROC/PR-AUC) never come from a choice made on the rows they are measured on. The model we
  ship is still chosen, and its threshold set, on every evaluated row.
"""

from __future__ import annotations

import platform
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.inspection import permutation_importance
from sklearn.metrics import average_precision_score
from sklearn.model_selection import KFold, StratifiedKFold

from scoring.ml.drift import DriftReference, build_drift_reference
from scoring.ml.features import FeatureSpec
from scoring.ml.metrics import best_f1_threshold, evaluate_predictions, expected_value_threshold
from scoring.ml.pipelines import Candidate, build_pipeline

CvScheme = Literal["stratified", "time"]
Split = tuple[np.ndarray, np.ndarray]

# Calibration: sigmoid (2 parameters) is stable on small data; isotonic is more flexible
# but overfits and creates score ties below a few tens of thousands of rows.
ISOTONIC_MIN_ROWS = 50_000
CALIBRATION_FOLDS = 3
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
    # Out-of-fold probabilities of the evaluated rows (not stored: the nested selection's).
    oof: np.ndarray | None = field(default=None, repr=False, compare=False)

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
    # Long only by its keyword signature and its result: the body is five named steps
    # (stack, split, evaluate candidates, calibrate out-of-fold, refit on every row).
    X, y, n_train = _stack_validation(X=X, y=y, spec=spec, X_valid=X_valid, y_valid=y_valid)
    splits = make_splits(
        y=y,
        cv=cv,
        n_splits=n_splits,
        random_state=random_state,
        time_index=time_index,
        n_train=n_train,
    )
    evaluated = np.unique(np.concatenate([va for _, va in splits]))
    reports, chosen = _evaluate_candidates(
        X=X,
        y=y,
        spec=spec,
        candidates=candidates,
        splits=splits,
        evaluated=evaluated,
        random_state=random_state,
        importance_sample=importance_sample,
    )
    if calibration == "auto":
        calibration = "isotonic" if len(X) >= ISOTONIC_MIN_ROWS else "sigmoid"

    def make_calibrated() -> CalibratedClassifierCV:
        pipe = build_pipeline(spec=spec, candidate=chosen, random_state=random_state)
        return calibrated(pipeline=pipe, method=calibration, random_state=random_state)

    def make_for(candidate: Candidate) -> Callable[[], CalibratedClassifierCV]:
        def make() -> CalibratedClassifierCV:
            pipe = build_pipeline(spec=spec, candidate=candidate, random_state=random_state)
            return calibrated(pipeline=pipe, method=calibration, random_state=random_state)

        return make

    p_eval, threshold, threshold_method, metrics = _calibrated_evaluation(
        make=make_calibrated,
        X=X,
        y=y,
        splits=splits,
        evaluated=evaluated,
        offer_cost=offer_cost,
        customer_value=customer_value,
        save_rate=save_rate,
    )
    metrics = _nested_metrics(
        reports=reports,
        chosen=chosen,
        chosen_p=p_eval,
        make_for=make_for,
        candidates=candidates,
        X=X,
        y=y,
        splits=splits,
        evaluated=evaluated,
        assessment=assessment_folds(
            splits=splits, evaluated=evaluated, y=y, n_splits=n_splits, random_state=random_state
        ),
        threshold=threshold,
        in_sample=metrics,
        costs=(offer_cost, customer_value, save_rate),
    )
    final = _fit_quietly(make_calibrated(), X, y)
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
        training_summary=_drift_reference(
            final=final, X=X, spec=spec, n_train=n_train, time_index=time_index
        ),
        reference_values=reference_values(X=X, spec=spec),
        calibration=calibration,
        validation={
            "scheme": cv if n_train is None else "holdout",
            "n_splits": len(splits),
            "random_state": random_state,
            "n_rows": len(X),
            "n_evaluated": len(evaluated),
            "positive_rate": float(y[evaluated].mean()),
        },
        oof_probabilities=p_eval,
    )


def _drift_reference(
    *,
    final: Any,
    X: pd.DataFrame,
    spec: FeatureSpec,
    n_train: int | None,
    time_index: Sequence[Any] | np.ndarray | pd.Series | None,
) -> DriftReference:
    """What scoring should see when nothing has changed: the rows of the latest cutoff only
    (with an out-of-time split, X stacks two cutoffs whose tenures differ by a horizon) and the
    FINAL model's scores of them. Out-of-fold scores come from other models (each fold's) and
    sit elsewhere, so a population scored at its own cutoff would read as drifted."""
    latest = X if n_train is None else X.iloc[n_train:]
    if n_train is None and time_index is not None:  # cv="time": rows of several cutoffs
        when = pd.to_datetime(pd.Series(np.asarray(time_index)))
        latest = X[(when == when.max()).to_numpy()]
    scores = final.predict_proba(latest)[:, 1]
    return build_drift_reference(X=latest, spec=spec, scores=scores)


def _evaluate_candidates(
    *,
    X: pd.DataFrame,
    y: np.ndarray,
    spec: FeatureSpec,
    candidates: Sequence[Candidate],
    splits: list[Split],
    evaluated: np.ndarray,
    random_state: int,
    importance_sample: int,
) -> tuple[list[CandidateReport], Candidate]:
    """Every candidate's out-of-fold report, and the one with the highest PR-AUC (the first
    on a tie). A candidate that fails is reported with its error, not selected."""
    reports: list[CandidateReport] = []
    best: tuple[float, Candidate] | None = None
    for candidate in candidates:
        report = _evaluate_candidate(
            X=X,
            y=y,
            spec=spec,
            candidate=candidate,
            splits=splits,
            evaluated=evaluated,
            random_state=random_state,
            importance_sample=importance_sample,
        )
        reports.append(report)
        if report.error is not None:
            continue
        score = report.metrics["pr_auc"]
        if np.isfinite(score) and (best is None or score > best[0]):
            best = (score, candidate)
    if best is None:
        errors = "; ".join(f"{r.name}: {r.error}" for r in reports)
        raise RuntimeError(f"no candidate could be trained ({errors})")
    return reports, best[1]


def _evaluate_candidate(
    *,
    X: pd.DataFrame,
    y: np.ndarray,
    spec: FeatureSpec,
    candidate: Candidate,
    splits: list[Split],
    evaluated: np.ndarray,
    random_state: int,
    importance_sample: int,
) -> CandidateReport:
    """Out-of-fold metrics at the max-F1 threshold, fit time, and permutation importance on
    the last validation fold."""
    described = candidate.to_dict()
    base = {
        "name": candidate.name,
        "sampler": described["sampler"],
        "classifier": candidate.classifier,
        "params": described["params"],
    }
    try:
        p, seconds, last_model = _oof(
            make=lambda: build_pipeline(spec=spec, candidate=candidate, random_state=random_state),
            X=X,
            y=y,
            splits=splits,
        )
        y_eval, p_eval = y[evaluated], p[evaluated]
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
        return CandidateReport(
            **base, metrics={}, permutation_importance={}, fit_seconds=0.0, error=repr(exc)
        )
    return CandidateReport(
        **base,
        metrics=metrics,
        permutation_importance=importance,
        fit_seconds=seconds,
        oof=p_eval,
    )


def _calibrated_evaluation(
    *,
    make: Callable[[], CalibratedClassifierCV],
    X: pd.DataFrame,
    y: np.ndarray,
    splits: list[Split],
    evaluated: np.ndarray,
    offer_cost: float | np.ndarray | None,
    customer_value: float | np.ndarray | None,
    save_rate: float,
) -> tuple[np.ndarray, float, str, dict[str, Any]]:
    """The whole procedure (calibration nested in each fold) out-of-fold: the evaluated
    rows' probabilities, the threshold, how it was chosen and the metrics at it. The
    threshold maximises the expected saving when the offer cost and customer value are
    given, else F1."""
    p_cal, cal_seconds, _ = _oof(make=make, X=X, y=y, splits=splits)
    y_eval, p_eval = y[evaluated], p_cal[evaluated]
    saving = None
    if offer_cost is not None and customer_value is not None:
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
    return p_eval, threshold, threshold_method, metrics


def assessment_folds(
    *,
    splits: list[Split],
    evaluated: np.ndarray,
    y: np.ndarray,
    n_splits: int,
    random_state: int,
) -> list[np.ndarray]:
    """The evaluated rows cut into folds, as positions into `evaluated`: the validation fold
    of each split (K-fold, time), or, with one holdout split, stratified folds of it."""
    where = pd.Index(evaluated)
    if len(splits) > 1:
        return [where.get_indexer(va) for _, va in splits]
    y_eval = y[evaluated]
    k = int(min(n_splits, np.bincount(y_eval, minlength=2).min()))
    if k < 2:
        return [np.arange(len(evaluated))]
    # By position, not stratified: a fold's membership must not depend on any label.
    folds = KFold(n_splits=k, shuffle=True, random_state=random_state)
    return [va for _, va in folds.split(np.zeros(len(y_eval)))]


def _nested_metrics(
    *,
    reports: list[CandidateReport],
    chosen: Candidate,
    chosen_p: np.ndarray,
    make_for: Callable[[Candidate], Callable[[], CalibratedClassifierCV]],
    candidates: Sequence[Candidate],
    X: pd.DataFrame,
    y: np.ndarray,
    splits: list[Split],
    evaluated: np.ndarray,
    assessment: list[np.ndarray],
    threshold: float,
    in_sample: Mapping[str, Any],
    costs: tuple[float | np.ndarray | None, float | np.ndarray | None, float],
) -> dict[str, Any]:
    """Metrics of the whole procedure with candidate and threshold chosen per assessment
    fold on the other folds' rows only (see the module docstring).

    Each fold's rows get the calibrated out-of-fold probabilities of the candidate with the
    best PR-AUC on the other folds, and are cut at the threshold that candidate's calibrated
    probabilities of the other folds give (max F1, or max expected saving with costs). The
    result keeps the shipped threshold under "threshold", the per-fold choices under
    "nested", and the metrics chosen on every row under "in_sample" for comparison."""
    offer_cost, customer_value, save_rate = costs
    y_eval = y[evaluated]
    by_name = {c.name: c for c in candidates}
    calibrated_p: dict[str, np.ndarray] = {chosen.name: chosen_p}
    p_nested = np.full(len(evaluated), np.nan)
    cut = np.full(len(evaluated), np.nan)
    folds: list[dict[str, Any]] = []
    usable = [r for r in reports if r.error is None and r.oof is not None]
    for rows in assessment:
        others = np.setdiff1d(np.arange(len(evaluated)), rows)
        if len(assessment) == 1:  # too few rows of a class to hold any out: say so below
            others = rows
        scores = [
            (_pr_auc(y_eval[others], r.oof[others]), i)  # type: ignore[index]
            for i, r in enumerate(usable)
        ]
        best = usable[max(scores, key=lambda t: (t[0], -t[1]))[1]].name
        if best not in calibrated_p:
            p_cal, _, _ = _oof(make=make_for(by_name[best]), X=X, y=y, splits=splits)
            calibrated_p[best] = p_cal[evaluated]
        p = calibrated_p[best]
        if offer_cost is not None and customer_value is not None:
            cost = np.broadcast_to(np.asarray(offer_cost, dtype=np.float64), y_eval.shape)
            value = np.broadcast_to(np.asarray(customer_value, dtype=np.float64), y_eval.shape)
            t, _ = expected_value_threshold(
                y=y_eval[others],
                p=p[others],
                offer_cost=cost[others],
                customer_value=value[others],
                save_rate=save_rate,
            )
        else:
            t = best_f1_threshold(y=y_eval[others], p=p[others])
        p_nested[rows], cut[rows] = p[rows], t
        folds.append({"candidate": best, "threshold": float(t), "n": len(rows)})
    metrics = evaluate_predictions(y=y_eval, p=p_nested, threshold=cut)  # type: ignore[arg-type]
    metrics["threshold"] = float(threshold)
    metrics["fit_seconds"] = in_sample.get("fit_seconds")
    if "expected_saving" in in_sample:
        flagged = p_nested >= cut
        cost = np.broadcast_to(np.asarray(offer_cost, dtype=np.float64), y_eval.shape)
        value = np.broadcast_to(np.asarray(customer_value, dtype=np.float64), y_eval.shape)
        gain = y_eval * value * save_rate - cost
        metrics["expected_saving"] = float(gain[flagged].sum())
        metrics["save_rate"] = save_rate
    metrics["nested"] = {
        "folds": folds,
        "out_of_sample": len(assessment) > 1,
        "note": "each fold scored by the candidate and cut at the threshold chosen on the "
        "other folds' out-of-fold predictions",
    }
    metrics["in_sample"] = {
        k: in_sample[k]
        for k in ("f1", "precision", "recall", "roc_auc", "pr_auc")
        if k in in_sample
    }
    return metrics


def _pr_auc(y: np.ndarray, p: np.ndarray) -> float:
    if len(np.unique(y)) < 2 or not np.isfinite(p).all():
        return float("-inf")
    return float(average_precision_score(y, p))


def _stack_validation(
    *,
    X: pd.DataFrame,
    y: np.ndarray,
    spec: FeatureSpec,
    X_valid: pd.DataFrame | None,
    y_valid: np.ndarray | None,
) -> tuple[pd.DataFrame, np.ndarray, int | None]:
    """The spec's columns of X (and X_valid below it) with their 0/1 labels, and the number
    of training rows before the validation rows (None without X_valid)."""
    X = X.loc[:, list(spec.columns)]
    y = np.asarray(y, dtype=np.int64)
    if set(np.unique(y)) - {0, 1}:
        raise ValueError("y must contain only 0 and 1")
    if X_valid is None:
        return X, y, None
    if y_valid is None:
        raise ValueError("X_valid needs y_valid")
    stacked = pd.concat([X, X_valid.loc[:, list(spec.columns)]], axis=0)
    return stacked, np.concatenate([y, np.asarray(y_valid, dtype=np.int64)]), len(X)
