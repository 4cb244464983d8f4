"""Uplift models: rank customers by how much an offer changes their outcome.

Trained on past *randomised* campaigns (treatment/control rows with the outcome), they score
new customers by predicted uplift = E(outcome | treated, x) - E(outcome | control, x): a change
in P(retained) for a binary outcome, in currency for revenue.

- T-learner: one model on treated rows, one on control rows; uplift = difference.
- DR-learner (Kennedy 2020): cross-fitted outcome models give each row a doubly robust
  pseudo-outcome whose mean given x is the uplift; one regression of it on x. The propensity
  is the arm's known share (the assignment was randomised), so the correction is unbiased
  even where the outcome models are wrong.
- Class transformation (Jaskowski & Jaroszewicz 2012): Z = 1 when (treated and Y=1) or
  (control and Y=0); with a 50/50 split uplift = 2 P(Z=1 | x) - 1. For an unbalanced split
  the rows are weighted so each arm carries half the total weight, which restores the identity.
  For revenue its continuous form, the transformed outcome Y (T - e) / (e (1 - e)), is
  regressed on x (Athey & Imbens 2016).

Several actions (`fit_multi_action`): one learner per action on that action's rows plus the
shared control rows. Evaluation with intervals: `campaigns/uplift/evaluation.py`; the plain
metrics here (`uplift_at_k`, `qini_coefficient`) are defined as in scikit-uplift so published
figures (Hillstrom: uplift@30% ~ 0.066) are comparable. The default base learners are a
standardised logistic regression (binary) and ridge regression (revenue): fast, stable, and on
Hillstrom as good as boosted trees; `base="hgb"` uses histogram gradient boosting instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

Features: TypeAlias = pd.DataFrame | npt.NDArray[Any]
FloatArray = npt.NDArray[np.float64]


def default_classifier() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))


def default_regressor() -> Pipeline:
    return make_pipeline(StandardScaler(), Ridge(alpha=1.0))


def hgb_classifier() -> HistGradientBoostingClassifier:
    # Shallow, strongly regularised trees: uplift is a small difference of two noisy fits.
    return HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=200, random_state=0
    )


def hgb_regressor() -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(
        max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=200, random_state=0
    )


def _binary_array(values: npt.ArrayLike, name: str) -> npt.NDArray[np.int64]:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if not np.isin(array, [0, 1]).all():
        raise ValueError(f"{name} must contain only 0 and 1")
    return array.astype(np.int64)


def _rows(features: Features, mask: npt.NDArray[np.bool_]) -> Features:
    return features.loc[mask] if isinstance(features, pd.DataFrame) else features[mask]


def _positive_probability(model: Any, features: Features) -> FloatArray:
    return np.asarray(model.predict_proba(features)[:, 1], dtype=np.float64)


def _expected_outcome(model: Any, features: Features) -> FloatArray:
    """P(outcome = 1) from a classifier, the predicted value from a regressor."""
    if is_classifier(model):
        return _positive_probability(model, features)
    return np.asarray(model.predict(features), dtype=np.float64)


@dataclass(frozen=True)
class TLearner:
    treated_model: Any
    control_model: Any
    treated_n: int
    control_n: int

    def predict_uplift(self, features: Features) -> FloatArray:
        return _expected_outcome(self.treated_model, features) - _expected_outcome(
            self.control_model, features
        )

    def to_dict(self) -> dict[str, Any]:
        return {"method": "t_learner", "treated_n": self.treated_n, "control_n": self.control_n}


@dataclass(frozen=True)
class ClassTransformationLearner:
    model: Any
    treated_n: int
    control_n: int

    def predict_uplift(self, features: Features) -> FloatArray:
        return 2.0 * _positive_probability(self.model, features) - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "class_transformation",
            "treated_n": self.treated_n,
            "control_n": self.control_n,
        }


def _check_training_data(
    features: Features, outcome: npt.ArrayLike, treatment: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    y = _binary_array(outcome, "outcome")
    t = _binary_array(treatment, "treatment")
    if not len(y) == len(t) == len(features):
        raise ValueError("features, outcome and treatment must have the same length")
    for arm, label in ((1, "treated"), (0, "control")):
        arm_outcomes = y[t == arm]
        if np.unique(arm_outcomes).size < 2:
            raise ValueError(f"{label} rows need both outcome classes to fit a classifier")
    return y, t


def fit_t_learner(
    *,
    features: Features,
    outcome: npt.ArrayLike,
    treatment: npt.ArrayLike,
    estimator: BaseEstimator | None = None,
) -> TLearner:
    """Fit two clones of `estimator` (default: scaled logistic regression), one per arm."""
    y, t = _check_training_data(features, outcome, treatment)
    base = estimator if estimator is not None else default_classifier()
    treated_mask, control_mask = t == 1, t == 0
    treated_model = clone(base).fit(_rows(features, treated_mask), y[treated_mask])
    control_model = clone(base).fit(_rows(features, control_mask), y[control_mask])
    return TLearner(
        treated_model=treated_model,
        control_model=control_model,
        treated_n=int(treated_mask.sum()),
        control_n=int(control_mask.sum()),
    )


def fit_class_transformation(
    *,
    features: Features,
    outcome: npt.ArrayLike,
    treatment: npt.ArrayLike,
    estimator: BaseEstimator | None = None,
) -> ClassTransformationLearner:
    """Fit one classifier on the transformed class Z = Y*T + (1-Y)*(1-T).

    Rows are weighted 0.5/share(arm) so both arms weigh the same; with an exact 50/50 split
    every weight is 1. The estimator must accept `sample_weight` (a Pipeline's last step).
    """
    y, t = _check_training_data(features, outcome, treatment)
    transformed = y * t + (1 - y) * (1 - t)
    treated_share = t.mean()
    weights = np.where(t == 1, 0.5 / treated_share, 0.5 / (1.0 - treated_share))
    model = clone(estimator if estimator is not None else default_classifier())
    weight_key = "sample_weight"
    if isinstance(model, Pipeline):
        weight_key = f"{model.steps[-1][0]}__sample_weight"
    model.fit(features, transformed, **{weight_key: weights})
    return ClassTransformationLearner(
        model=model, treated_n=int((t == 1).sum()), control_n=int((t == 0).sum())
    )


def uplift_at_k(
    *,
    y: npt.ArrayLike,
    treatment: npt.ArrayLike,
    score: npt.ArrayLike,
    k: float = 0.3,
    strategy: Literal["by_group", "overall"] = "by_group",
) -> float:
    """Observed uplift (treated rate - control rate) among the top-k fraction by score.

    "by_group" (default, scikit-uplift's tutorial setting): the top ceil(k * n) of each arm
    separately. "overall": the top ceil(k * N) of everyone, then split by arm. Returns a plain
    float: a metric, not a report.
    """
    outcome = np.asarray(y, dtype=np.float64)
    arm = _binary_array(treatment, "treatment")
    scores = np.asarray(score, dtype=np.float64)
    if not len(outcome) == len(arm) == len(scores):
        raise ValueError("y, treatment and score must have the same length")
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must be in (0, 1], got {k}")
    order = np.argsort(-scores, kind="mergesort")
    outcome, arm = outcome[order], arm[order]
    if strategy == "overall":
        top = math.ceil(len(outcome) * k)
        top_outcome, top_arm = outcome[:top], arm[:top]
        if top_arm.min() == top_arm.max():
            raise ValueError("the top k holds only one arm; uplift is undefined")
        return float(top_outcome[top_arm == 1].mean() - top_outcome[top_arm == 0].mean())
    if strategy != "by_group":
        raise ValueError(f"strategy must be 'by_group' or 'overall', got {strategy!r}")
    treated_outcome, control_outcome = outcome[arm == 1], outcome[arm == 0]
    if treated_outcome.size == 0 or control_outcome.size == 0:
        raise ValueError("both arms must be present")
    treated_top = treated_outcome[: math.ceil(treated_outcome.size * k)]
    control_top = control_outcome[: math.ceil(control_outcome.size * k)]
    return float(treated_top.mean() - control_top.mean())


def qini_curve(
    *, y: npt.ArrayLike, treatment: npt.ArrayLike, score: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Qini curve: for the top n customers by score (ties kept together),
    Q(n) = treated responders - control responders * treated count / control count.
    Returns (n, Q) starting at (0, 0)."""
    outcome = np.asarray(y, dtype=np.float64)
    arm = _binary_array(treatment, "treatment").astype(np.float64)
    scores = np.asarray(score, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    outcome, arm, scores = outcome[order], arm[order], scores[order]
    # Cut only where the score changes, so tied customers enter together.
    cut = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    treated_count = np.cumsum(arm)[cut]
    control_count = (cut + 1) - treated_count
    treated_responders = np.cumsum(outcome * arm)[cut]
    control_responders = np.cumsum(outcome * (1.0 - arm))[cut]
    scale = np.divide(
        treated_count, control_count, out=np.zeros_like(treated_count), where=control_count > 0
    )
    qini = treated_responders - control_responders * scale
    return np.r_[0.0, cut + 1.0], np.r_[0.0, qini]


def qini_coefficient(*, y: npt.ArrayLike, treatment: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Normalised Qini coefficient: (area between the model's Qini curve and the random line)
    / (same for the perfect ranking). 0 = random targeting, 1 = perfect; can be negative.
    Same definition as scikit-uplift's qini_auc_score(negative_effect=True)."""
    outcome = np.asarray(y, dtype=np.float64)
    arm = _binary_array(treatment, "treatment")
    n_model, q_model = qini_curve(y=outcome, treatment=arm, score=score)
    # Perfect ranking: treated responders first, control responders last.
    perfect_score = outcome * arm - outcome * (1 - arm)
    n_perfect, q_perfect = qini_curve(y=outcome, treatment=arm, score=perfect_score)
    random_area = 0.5 * n_perfect[-1] * q_perfect[-1]
    perfect_area = float(np.trapezoid(q_perfect, n_perfect)) - random_area
    model_area = float(np.trapezoid(q_model, n_model)) - random_area
    if perfect_area == 0:
        raise ValueError("the perfect Qini area equals the random one; coefficient undefined")
    return float(model_area / perfect_area)


# --- Revenue (continuous outcome) and the DR-learner ------------------------------------------

OutcomeKind = Literal["binary", "revenue"]
BaseLearner = Literal["linear", "hgb"]


def _outcome_array(values: npt.ArrayLike, kind: OutcomeKind) -> FloatArray:
    if kind == "binary":
        return _binary_array(values, "outcome").astype(np.float64)
    if kind != "revenue":
        raise ValueError(f"outcome kind must be 'binary' or 'revenue', got {kind!r}")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"outcome (revenue) must be numbers: {error}") from error
    if array.ndim != 1:
        raise ValueError("outcome must be one-dimensional")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"outcome (revenue) must be finite numbers; row {int(bad[0])} is not")
    return array


def _check_arms(
    features: Features, outcome: npt.ArrayLike, treatment: npt.ArrayLike, kind: OutcomeKind
) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    y = _outcome_array(outcome, kind)
    t = _binary_array(treatment, "treatment")
    if not len(y) == len(t) == len(features):
        raise ValueError("features, outcome and treatment must have the same length")
    for arm, label in ((1, "treated"), (0, "control")):
        arm_outcomes = y[t == arm]
        if arm_outcomes.size < 2:
            raise ValueError(f"at least 2 {label} rows are needed, got {arm_outcomes.size}")
        if kind == "binary" and np.unique(arm_outcomes).size < 2:
            raise ValueError(f"{label} rows need both outcome classes to fit a classifier")
    return y, t


def _base_estimators(base: BaseLearner) -> tuple[BaseEstimator, BaseEstimator]:
    """(classifier, regressor) for `base`."""
    if base == "linear":
        return default_classifier(), default_regressor()
    if base == "hgb":
        return hgb_classifier(), hgb_regressor()
    raise ValueError(f"base must be 'linear' or 'hgb', got {base!r}")


def fit_t_learner_revenue(
    *,
    features: Features,
    outcome: npt.ArrayLike,
    treatment: npt.ArrayLike,
    estimator: BaseEstimator | None = None,
) -> TLearner:
    """T-learner for a continuous outcome: two regressors (default: scaled ridge)."""
    y, t = _check_arms(features, outcome, treatment, "revenue")
    base = estimator if estimator is not None else default_regressor()
    treated_mask, control_mask = t == 1, t == 0
    return TLearner(
        treated_model=clone(base).fit(_rows(features, treated_mask), y[treated_mask]),
        control_model=clone(base).fit(_rows(features, control_mask), y[control_mask]),
        treated_n=int(treated_mask.sum()),
        control_n=int(control_mask.sum()),
    )


@dataclass(frozen=True)
class DRLearner:
    """The final regression of the doubly robust pseudo-outcome on x."""

    model: Any
    treated_n: int
    control_n: int
    folds: int
    kind: str

    def predict_uplift(self, features: Features) -> FloatArray:
        uplift = np.asarray(self.model.predict(features), dtype=np.float64)
        # A change in a probability lies in [-1, 1]; the linear final stage can overshoot.
        return np.clip(uplift, -1.0, 1.0) if self.kind == "binary" else uplift

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "dr_learner",
            "treated_n": self.treated_n,
            "control_n": self.control_n,
            "folds": self.folds,
        }


def fit_dr_learner(
    *,
    features: Features,
    outcome: npt.ArrayLike,
    treatment: npt.ArrayLike,
    kind: OutcomeKind = "binary",
    estimator: BaseEstimator | None = None,
    final_estimator: BaseEstimator | None = None,
    folds: int = 2,
    seed: int = 0,
) -> DRLearner:
    """DR-learner, cross-fitted: outcome models per arm (`estimator`, default scaled logistic
    regression for binary, ridge for revenue) are fitted on the other folds and predict each
    row's mu1, mu0; the pseudo-outcome

        phi = mu1 - mu0 + T (Y - mu1) / e - (1 - T) (Y - mu0) / (1 - e)

    (e = the treated share, known because the assignment was randomised) is regressed on x by
    `final_estimator` (default scaled ridge). Cost: 2 * folds + 1 linear fits."""
    y, t = _check_arms(features, outcome, treatment, kind)
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    classifier, regressor = _base_estimators("linear")
    outcome_model = (
        estimator if estimator is not None else (classifier if kind == "binary" else regressor)
    )
    e = float(t.mean())
    mu1 = np.empty(len(y))
    mu0 = np.empty(len(y))
    strata = t * 2 + y.astype(np.int64) if kind == "binary" else t
    cells = np.bincount(strata, minlength=4 if kind == "binary" else 2)
    if cells.min() < folds:
        raise ValueError(
            f"the DR-learner's {folds}-fold cross-fitting needs at least {folds} rows of every "
            "arm" + (" × outcome" if kind == "binary" else "") + f" cell; the smallest has "
            f"{int(cells.min())}"
        )
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, held in splitter.split(np.zeros(len(y)), strata):
        for arm, target in ((1, mu1), (0, mu0)):
            rows = train[t[train] == arm]
            model = clone(outcome_model).fit(_rows_at(features, rows), y[rows])
            target[held] = _expected_outcome(model, _rows_at(features, held))
    pseudo = mu1 - mu0 + t * (y - mu1) / e - (1 - t) * (y - mu0) / (1.0 - e)
    final = clone(final_estimator if final_estimator is not None else regressor)
    final.fit(features, pseudo)
    return DRLearner(
        model=final,
        treated_n=int(t.sum()),
        control_n=int((t == 0).sum()),
        folds=folds,
        kind=kind,
    )


def _rows_at(features: Features, positions: npt.NDArray[np.intp]) -> Features:
    return features.iloc[positions] if isinstance(features, pd.DataFrame) else features[positions]


@dataclass(frozen=True)
class TransformedOutcomeLearner:
    """Class transformation for a continuous outcome: E[Y (T - e) / (e (1 - e)) | x] is the
    uplift, so one regression of that transformed outcome on x predicts it."""

    model: Any
    treated_n: int
    control_n: int

    def predict_uplift(self, features: Features) -> FloatArray:
        return np.asarray(self.model.predict(features), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": "class_transformation",
            "form": "transformed_outcome",
            "treated_n": self.treated_n,
            "control_n": self.control_n,
        }


def fit_transformed_outcome(
    *,
    features: Features,
    outcome: npt.ArrayLike,
    treatment: npt.ArrayLike,
    estimator: BaseEstimator | None = None,
) -> TransformedOutcomeLearner:
    """Regress Y (T - e) / (e (1 - e)) on x (default scaled ridge); e = the treated share."""
    y, t = _check_arms(features, outcome, treatment, "revenue")
    e = float(t.mean())
    transformed = y * (t - e) / (e * (1.0 - e))
    model = clone(estimator if estimator is not None else default_regressor())
    model.fit(features, transformed)
    return TransformedOutcomeLearner(
        model=model, treated_n=int(t.sum()), control_n=int((t == 0).sum())
    )


# --- Several actions against one shared control arm ------------------------------------------
# The contract the product uses (campaigns/services/uplift_models.py): `fit_multi_action` and
# `MultiActionUplift.predict_uplift`. Each action (one rule of a campaign: offer × channel) is
# fitted against the shared control rows.

CONTROL_ARM = "control"
UpliftMethod = Literal["t_learner", "dr_learner", "class_transformation"]
UPLIFT_METHODS: tuple[str, ...] = ("t_learner", "dr_learner", "class_transformation")


@dataclass(frozen=True)
class MultiActionUplift:
    """Per action, a fitted learner with `predict_uplift(features) -> array`: the change in
    P(outcome) (binary) or in expected revenue (revenue) if the customer gets the action
    rather than nothing."""

    method: str
    kind: str
    actions: tuple[str, ...]
    learners: dict[str, Any]
    base: str = "linear"

    def predict_uplift(self, features: pd.DataFrame) -> pd.DataFrame:
        """One column per action, one row per customer (the features' index)."""
        return pd.DataFrame(
            {action: self.learners[action].predict_uplift(features) for action in self.actions},
            index=features.index,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "kind": self.kind,
            "base": self.base,
            "actions": {a: self.learners[a].to_dict() for a in self.actions},
        }


def _fit_one(
    *,
    method: str,
    kind: OutcomeKind,
    features: pd.DataFrame,
    outcome: FloatArray,
    treatment: npt.NDArray[np.int64],
    estimator: BaseEstimator | None,
    base: BaseLearner,
    seed: int,
) -> Any:
    classifier, regressor = _base_estimators(base)
    final_regressor = regressor  # the DR-learner's last stage is always a regression
    if estimator is not None:
        classifier = regressor = estimator
    if method == "t_learner":
        if kind == "binary":
            return fit_t_learner(
                features=features,
                outcome=outcome,
                treatment=treatment,
                estimator=classifier,
            )
        return fit_t_learner_revenue(
            features=features,
            outcome=outcome,
            treatment=treatment,
            estimator=regressor,
        )
    if method == "dr_learner":
        return fit_dr_learner(
            features=features,
            outcome=outcome,
            treatment=treatment,
            kind=kind,
            estimator=classifier if kind == "binary" else regressor,
            final_estimator=final_regressor,
            seed=seed,
        )
    if kind == "binary":
        return fit_class_transformation(
            features=features,
            outcome=outcome,
            treatment=treatment,
            estimator=classifier,
        )
    return fit_transformed_outcome(
        features=features, outcome=outcome, treatment=treatment, estimator=regressor
    )


def fit_multi_action(
    *,
    method: UpliftMethod,
    features: pd.DataFrame,
    arm: npt.ArrayLike,
    outcome: npt.ArrayLike,
    kind: OutcomeKind = "binary",
    estimator: BaseEstimator | None = None,
    base: BaseLearner = "linear",
    seed: int = 0,
) -> MultiActionUplift:
    """`arm` holds CONTROL_ARM or an action key per row; one learner per action, each fitted on
    that action's rows plus every control row.

    `method`: "t_learner", "dr_learner" or "class_transformation" (for revenue: the
    transformed-outcome regression). `kind`: "binary" (0/1, e.g. retained) or "revenue" (any
    finite number). `base`: "linear" (scaled logistic / ridge regression) or "hgb" (histogram
    gradient boosting). `estimator` replaces the per-arm outcome model (T- and DR-learner) or
    the one classifier (class transformation, binary)."""
    if method not in UPLIFT_METHODS:
        raise ValueError(f"method must be one of {', '.join(UPLIFT_METHODS)}; got {method!r}")
    if kind not in ("binary", "revenue"):
        raise ValueError(f"outcome kind must be 'binary' or 'revenue', got {kind!r}")
    _base_estimators(base)  # validates `base` before any fitting
    arms = np.asarray(arm, dtype=object)
    y = _outcome_array(outcome, kind)
    if not len(arms) == len(y) == len(features):
        raise ValueError(
            f"features, arm and outcome must have the same length; got {len(features)}, "
            f"{len(arms)} and {len(y)}"
        )
    control = arms == CONTROL_ARM
    if not control.any():
        raise ValueError(f"there are no control rows (arm == {CONTROL_ARM!r})")
    actions = tuple(sorted({str(a) for a in arms[~control]}))
    if not actions:
        raise ValueError("there are no treated rows: every arm is control")
    learners: dict[str, Any] = {}
    for action in actions:
        rows = control | (arms == action)
        try:
            learners[action] = _fit_one(
                method=method,
                kind=kind,
                features=features.loc[rows],
                outcome=y[rows],
                treatment=(arms[rows] == action).astype(np.int64),
                estimator=estimator,
                base=base,
                seed=seed,
            )
        except ValueError as error:
            raise ValueError(f"action {action!r}: {error}") from error
    return MultiActionUplift(
        method=method, kind=kind, actions=actions, learners=learners, base=base
    )
