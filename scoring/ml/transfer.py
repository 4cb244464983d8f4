"""Transfer learning for churn: a target shop with few labels borrows from a source model.

Pure numpy/pandas/scikit-learn/scipy. The source and the target share behavioural features
(`SHARED_FEATURES`: RFM windows, gaps between orders, trend, BG/NBD, refunds), which every
shop's order history yields through `features.build_features`; attributes and event kinds
are shop-specific and never shared. Three ways to borrow, each compared with the target
alone on the target's own labelled rows (`transfer_select`):

- ``source_score``: the source model's calibrated probability (as a logit) is one more input
  of the target model;
- ``weighted_pooling``: the source's labelled rows join the target's, each weighted by how
  target-like it is: w = P(target | x) / P(source | x) from a domain classifier (logistic
  regression on the shared features), clipped at `MAX_WEIGHT` and scaled so the source rows
  weigh at most `POOL_SHARE` times the target rows;
- ``prior``: a logistic regression whose coefficients are pulled towards the source's (a
  Gaussian prior centred on them) instead of towards zero; the source coefficients are those
  of a logistic regression fitted to the source model's logit over the target's rows, so an
  imported model without its rows gives a prior too (warm start is meaningless for a convex
  fit: it ends where it would have anyway, so the prior is the form the estimator allows).

The method with the best out-of-fold log loss on the target's labelled rows is kept, but a
transfer method must beat the target alone by more than one standard error of the paired
per-row difference (the one-standard-error rule, in favour of the simpler model): the target
alone is one of the methods and wins ties and noise, so transfer is never forced.

The kept method is shipped as a `TransferEstimator` (`TransferModel.to_estimator`): one
skops-serialisable estimator of the target's aligned features, which for ``source_score``
carries the source estimator and computes its score at scoring time (docs/transfer.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from scoring.ml.features import FeatureSpec, align_features

# Behavioural columns of features.build_features that mean the same thing in every shop.
SHARED_FEATURES = (
    "orders_30d",
    "orders_90d",
    "orders_365d",
    "revenue_30d",
    "revenue_90d",
    "revenue_365d",
    "orders_lifetime",
    "revenue_lifetime",
    "avg_order_value",
    "items_per_order",
    "recency_days",
    "tenure_days",
    "interorder_mean_days",
    "interorder_std_days",
    "revenue_trend_90d",
    "refund_share",
    "cancel_share",
    "discount_share",
    "p_alive",
    "expected_orders_180d",
    "p_no_order_180d",
)
# Money and counts are heavy-tailed; shops differ in currency and basket size: log1p them.
_LOG_PREFIXES = ("orders_", "revenue_", "avg_order_value", "items_per_order", "expected_")
METHODS = ("target_only", "source_score", "weighted_pooling", "prior")
MAX_WEIGHT = 10.0
POOL_SHARE = 1.0
PRIOR_STRENGTH = 1.0  # precision of the Gaussian prior, per coefficient, in standardised units
C_TARGET = 1.0
CLIP_SD = 5.0
_EPS = 1e-6


def shared_columns(*frames: pd.DataFrame) -> tuple[str, ...]:
    """The shared behavioural columns present in every frame, in `SHARED_FEATURES` order."""
    return tuple(c for c in SHARED_FEATURES if all(c in f.columns for f in frames))


def prepare(X: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """`columns` of X as float64, counts and money on a log scale (shop-size invariant-ish);
    missing stays NaN (imputed in the model)."""
    out = {}
    for c in columns:
        values = pd.to_numeric(X[c], errors="coerce").astype(np.float64)
        if c.startswith(_LOG_PREFIXES):
            values = np.sign(values) * np.log1p(np.abs(values))
        out[c] = values
    return pd.DataFrame(out, index=X.index)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


@dataclass(frozen=True)
class SourceModel:
    """What a source offers: `predict` (calibrated churn probability of a frame holding the
    source's features; the target's frame is passed, missing columns are NaN) and optionally
    its labelled rows over the shared features (for pooling)."""

    name: str
    predict: Callable[[pd.DataFrame], np.ndarray]
    X: pd.DataFrame | None = None
    y: np.ndarray | None = None
    # The fitted source estimator and its feature spec (`FeatureSpec.to_dict`): what a
    # shipped `source_score` model carries to compute the source's score at scoring time.
    estimator: Any = None
    spec: Mapping[str, Any] | None = None


def _imputer() -> SimpleImputer:
    return SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)


def _linear(C: float = C_TARGET) -> Pipeline:
    return Pipeline(
        [
            (
                "impute",
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            ),
            ("scale", StandardScaler()),
            ("lr", LogisticRegression(C=C, max_iter=2000)),
        ]
    )


@dataclass(frozen=True, eq=False)
class TransferModel:
    """A fitted target model of one method; `predict_proba_1` scores target rows."""

    method: str
    columns: tuple[str, ...]
    estimator: Any
    source: SourceModel | None
    extras: dict[str, Any] = field(default_factory=dict)

    def _inputs(self, X: pd.DataFrame) -> pd.DataFrame:
        Z = prepare(X, self.columns)
        if self.method == "source_score":
            assert self.source is not None
            Z = Z.assign(source_logit=_logit(self.source.predict(X)))
        return Z

    def predict_proba_1(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(self._inputs(X))[:, 1], dtype=np.float64)

    def to_estimator(self) -> TransferEstimator:
        """The model as one scikit-learn-style estimator of the frames it was fitted on: what
        the registry stores and scoring runs load (skops-serialisable; a `source_score` model
        carries the source estimator and its feature spec). Needs `SourceModel.estimator` and
        `.spec` for `source_score`."""
        source = spec = None
        if self.method == "source_score":
            assert self.source is not None
            if self.source.estimator is None or self.source.spec is None:
                raise ValueError(
                    f"source {self.source.name}: shipping source_score needs its estimator "
                    "and feature spec"
                )
            source, spec = self.source.estimator, dict(self.source.spec)
        return TransferEstimator(
            method=self.method,
            columns=list(self.columns),
            model=self.estimator,
            source=source,
            source_spec=spec,
        )


class TransferEstimator:
    """A fitted transfer model as stored in the registry: `predict_proba(X)` of the frame the
    target's features come in (the model's aligned features). `model` is a scikit-learn
    pipeline over `prepare(X, columns)` (plus, for `source_score`, the source's calibrated
    probability as a logit, computed here by `source` from X aligned to `source_spec`).
    Instance weighting and the prior are plain logistic regressions once fitted (the weights
    act only in the fit; the prior's coefficients are the fitted ones): they need no source."""

    def __init__(
        self,
        *,
        method: str,
        columns: list[str],
        model: Any,
        source: Any = None,
        source_spec: dict[str, Any] | None = None,
    ) -> None:
        self.method = method
        self.columns = columns
        self.model = model
        self.source = source
        self.source_spec = source_spec
        self.classes_ = np.array([0, 1])

    def source_logit(self, X: pd.DataFrame) -> np.ndarray:
        """The source model's calibrated churn probability of each row, as a logit."""
        assert self.source is not None and self.source_spec is not None
        aligned = align_features(features=X, spec=FeatureSpec.from_dict(self.source_spec))
        return _logit(self.source.predict_proba(aligned)[:, 1])

    def inputs(self, X: pd.DataFrame) -> pd.DataFrame:
        Z = prepare(X, self.columns)
        if self.method == "source_score":
            Z = Z.assign(source_logit=self.source_logit(X))
        return Z

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = np.asarray(self.model.predict_proba(self.inputs(X))[:, 1], dtype=np.float64)
        return np.c_[1 - p, p]


def domain_weights(
    *, X_source: pd.DataFrame, X_target: pd.DataFrame, columns: Sequence[str]
) -> np.ndarray:
    """Importance weight of each source row: P(target|x)/P(source|x) · n_source/n_target from
    a logistic domain classifier, clipped to [0, MAX_WEIGHT]."""
    Zs, Zt = prepare(X_source, columns), prepare(X_target, columns)
    Z = pd.concat([Zs, Zt], axis=0, ignore_index=True)
    d = np.r_[np.zeros(len(Zs)), np.ones(len(Zt))]
    clf = _linear(C=0.1).fit(Z, d)
    p = np.clip(clf.predict_proba(Zs)[:, 1], _EPS, 1 - _EPS)
    w = p / (1 - p) * (len(Zs) / max(len(Zt), 1))
    return np.clip(w, 0.0, MAX_WEIGHT)


def fit_method(
    method: str,
    *,
    X: pd.DataFrame,
    y: np.ndarray,
    source: SourceModel | None,
    columns: Sequence[str],
    X_unlabelled: pd.DataFrame | None = None,
) -> TransferModel:
    """Fit one method on the target's labelled rows `X`, `y` (and, for the domain classifier
    and the prior, the target's unlabelled rows when given)."""
    y = np.asarray(y, dtype=np.int64)
    cols = tuple(columns)
    if method == "target_only" or source is None:
        return TransferModel("target_only", cols, _linear().fit(prepare(X, cols), y), None)
    if method == "source_score":
        model = TransferModel(method, cols, None, source)
        est = _linear().fit(model._inputs(X), y)
        return TransferModel(method, cols, est, source)
    target_rows = X if X_unlabelled is None else pd.concat([X, X_unlabelled], axis=0)
    if method == "weighted_pooling":
        if source.X is None or source.y is None:
            raise ValueError("weighted_pooling needs the source's labelled rows")
        w = domain_weights(X_source=source.X, X_target=target_rows, columns=cols)
        scale = min(1.0, POOL_SHARE * len(X) / max(w.sum(), _EPS))
        Z = pd.concat([prepare(X, cols), prepare(source.X, cols)], axis=0, ignore_index=True)
        yy = np.r_[y, np.asarray(source.y, dtype=np.int64)]
        weights = np.r_[np.ones(len(X)), w * scale]
        est = _linear().fit(Z, yy, lr__sample_weight=weights)
        return TransferModel(
            method, cols, est, source, {"source_weight": float(weights[len(X) :].sum())}
        )
    if method == "prior":
        return _fit_prior(X=X, y=y, source=source, columns=cols, target_rows=target_rows)
    raise ValueError(f"unknown transfer method {method!r} (choose from {', '.join(METHODS)})")


def _fit_prior(
    *,
    X: pd.DataFrame,
    y: np.ndarray,
    source: SourceModel,
    columns: tuple[str, ...],
    target_rows: pd.DataFrame,
) -> TransferModel:
    """Logistic regression with a Gaussian prior centred on the source's coefficients, all in
    the standardised space of the target's rows."""
    prep = Pipeline(
        [
            (
                "impute",
                SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            ),
            ("scale", StandardScaler()),
        ]
    )
    Zall = prep.fit_transform(prepare(target_rows, columns))
    # The source's view of the target rows, as a linear function of the same inputs.
    s = _logit(source.predict(target_rows))
    A = np.c_[np.ones(len(Zall)), Zall]
    ridge = 1e-3 * np.eye(A.shape[1])
    ridge[0, 0] = 0.0
    w0 = np.linalg.solve(A.T @ A + ridge, A.T @ s)
    Z = np.c_[np.ones(len(X)), prep.transform(prepare(X, columns))]
    yf = np.asarray(y, dtype=np.float64)
    lam = PRIOR_STRENGTH * np.r_[0.0, np.ones(Z.shape[1] - 1)]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        eta = Z @ w
        p = 1 / (1 + np.exp(-eta))
        nll = np.sum(np.logaddexp(0, eta) - yf * eta)
        d = w - w0
        return float(nll + 0.5 * np.sum(lam * d * d)), Z.T @ (p - yf) + lam * d

    w = minimize(loss, w0, jac=True, method="L-BFGS-B").x
    # The fit as a plain logistic regression after the same preprocessing (what is stored).
    lr = LogisticRegression()
    lr.classes_ = np.array([0, 1])
    lr.coef_ = w[None, 1:].copy()
    lr.intercept_ = w[:1].copy()
    lr.n_features_in_ = Z.shape[1] - 1
    lr.n_iter_ = np.array([0], dtype=np.int32)
    estimator = Pipeline([*prep.steps, ("lr", lr)])
    return TransferModel(
        "prior", columns, estimator, source, {"prior": w0.tolist(), "fit": w.tolist()}
    )


@dataclass(frozen=True, eq=False)
class TransferResult:
    """The kept method, every method's out-of-fold figures on the target's labelled rows, and
    the kept method refitted on all of them."""

    selected: str
    scores: dict[str, dict[str, float]]
    model: TransferModel

    def to_dict(self) -> dict[str, Any]:
        return {
            "selected": self.selected,
            "scores": self.scores,
            "source": None if self.model.source is None else self.model.source.name,
            "columns": list(self.model.columns),
        }


def transfer_select(
    *,
    X: pd.DataFrame,
    y: np.ndarray,
    source: SourceModel | None,
    methods: Sequence[str] = METHODS,
    n_splits: int = 3,
    random_state: int = 0,
    X_unlabelled: pd.DataFrame | None = None,
    columns: Sequence[str] | None = None,
) -> TransferResult:
    """Every method out-of-fold on the target's labelled rows (stratified K-fold); keep the
    one with the lowest log loss (the target alone on a tie, and whenever no source is
    given), refit it on every labelled row. Methods the source cannot serve (pooling without
    source rows) are skipped."""
    y = np.asarray(y, dtype=np.int64)
    cols = tuple(columns) if columns is not None else shared_columns(X)
    wanted = ["target_only", *[m for m in methods if m != "target_only"]]
    if source is None:
        wanted = ["target_only"]
    elif source.X is None:
        wanted = [m for m in wanted if m != "weighted_pooling"]
    k = int(min(n_splits, np.bincount(y, minlength=2).min()))
    if k < 2:
        raise ValueError("the target needs at least two labelled rows of each class")
    folds = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state).split(X, y))
    scores: dict[str, dict[str, float]] = {}
    row_loss: dict[str, np.ndarray] = {}
    for method in wanted:
        p = np.empty(len(y))
        for train, valid in folds:
            model = fit_method(
                method,
                X=X.iloc[train],
                y=y[train],
                source=source,
                columns=cols,
                X_unlabelled=X_unlabelled,
            )
            p[valid] = model.predict_proba_1(X.iloc[valid])
        scores[method] = evaluate(y=y, p=p)
        row_loss[method] = _row_log_loss(y, p)
    best = "target_only"
    for method in wanted[1:]:
        diff = row_loss["target_only"] - row_loss[method]
        se = float(diff.std(ddof=1) / np.sqrt(len(diff)))
        scores[method]["gain_over_target_only"] = float(diff.mean())
        scores[method]["gain_standard_error"] = se
        beats = diff.mean() > se and scores[method]["log_loss"] < scores[best]["log_loss"]
        if beats:
            best = method
    model = fit_method(best, X=X, y=y, source=source, columns=cols, X_unlabelled=X_unlabelled)
    return TransferResult(best, scores, model)


def _row_log_loss(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def evaluate(*, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Log loss, ROC-AUC and PR-AUC (NaN when a class is missing)."""
    y = np.asarray(y, dtype=np.int64)
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    both = 0 < y.sum() < len(y)
    return {
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
    }
