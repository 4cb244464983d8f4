"""Exact Shapley values for tree models: TreeSHAP (`shap`), used by `scoring.ml.explain`.

A gradient-boosted (`HistGradientBoostingClassifier`) or random-forest model after column-wise
preprocessing (optionally several, averaged by `CalibratedClassifierCV`) is explained per
calibrated member:

1. its rows and the typical customer's row go through the member's fitted transformers
   (samplers left out: they act only in `fit`);
2. interventional TreeSHAP with the typical row as the only background row gives the exact
   Shapley values of the game v(S) = f(z with the columns outside S at their typical values),
   f the member's response (the boosted margin from `decision_function`, or the forest's
   probability): the same game the sampled method estimates, solved exactly and with one pass
   over the trees per row instead of PERMUTATIONS x (groups - 1) predictions;
3. each transformed column feeds one input (checked by probing the transformers, as for
   linear models), so an input's value is the sum over its columns (one-hot columns, a
   missing-value indicator); a group's value is its inputs' sum. These sums add up exactly;
   they are Shapley values of the inputs' columns, not of the coarser game whose players are
   the groups (the two differ by interactions between members of one group and others);
4. the response attributions are mapped to probability points by the proportional rule of
   the linear method (`scoring.ml.shapley`): multiplied by (p(x) - p(typical)) / their sum,
   which keeps their signs and proportions and makes them add up to p(x) - p(typical)
   exactly; members are averaged as `predict_proba` averages them.

TreeSHAP's sums agree with the model's own response to about 1e-7 (the trees compare in
float32); a member whose sums disagree by more than `ADDITIVE_TOLERANCE` (a model `shap` reads
differently from scikit-learn) makes the whole estimator fall back to the sampled method.

`shap` 0.51.0 is the last release for Python 3.11 (0.54 needs 3.12); it is imported on first
use only, as it loads numba.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (
    ExtraTreesClassifier,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)

from scoring.ml.linear_reasons import _feeds, _probe_frame, calibrated_members
from scoring.ml.transforms import transform_steps

logger = logging.getLogger(__name__)

# Largest difference allowed between TreeSHAP's sum and the member's response change, relative
# to max(1, |change|) (float32 thresholds: about 1e-7 in practice).
ADDITIVE_TOLERANCE = 1e-5
# Largest transformed matrix (rows x transformed columns, float64) explained in one pass.
MAX_BYTES = 1 << 29
# Rows per call of shap (a call takes well under the 10 s after which shap prints progress).
SHAP_ROWS = 2_000
_DECISION = (HistGradientBoostingClassifier,)
_PROBABILITY = (RandomForestClassifier, ExtraTreesClassifier)


@dataclass(frozen=True)
class TreeMember:
    """One tree model of an estimator: p = link(response(transform(X)))."""

    steps: tuple[Any, ...]  # fitted transformers before the model (samplers left out)
    model: Any
    link: Callable[[np.ndarray], np.ndarray]

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        return transform_steps(self.steps, X)

    def response(self, Z: np.ndarray) -> np.ndarray:
        if isinstance(self.model, _DECISION):
            return np.asarray(self.model.decision_function(Z), dtype=np.float64).ravel()
        return np.asarray(self.model.predict_proba(Z)[:, 1], dtype=np.float64)

    def probability(self, response: np.ndarray) -> np.ndarray:
        """The calibrated probability of responses (`response`'s values)."""
        p = np.asarray(self.link(response), dtype=np.float64).ravel()
        p[(p > 1.0) & (p <= 1.0 + 1e-5)] = 1.0  # as CalibratedClassifierCV does
        return p


def _identity(values: np.ndarray) -> np.ndarray:
    return values


def _tree_pipeline(pipeline: Any) -> tuple[tuple[Any, ...], Any] | None:
    steps = getattr(pipeline, "steps", None)
    if not steps:
        return None
    final = steps[-1][1]
    if not isinstance(final, _DECISION + _PROBABILITY) or len(getattr(final, "classes_", ())) != 2:
        return None
    transformers = tuple(
        step
        for _, step in steps[:-1]
        if step not in (None, "passthrough") and not hasattr(step, "fit_resample")
    )
    if not all(hasattr(step, "transform") for step in transformers):
        return None
    return transformers, final


def tree_members(estimator: Any) -> list[TreeMember] | None:
    """The tree models whose calibrated average is `estimator`, or None if it is not one."""
    if isinstance(estimator, CalibratedClassifierCV):

        def member(fitted: Any, link: Callable[..., Any]) -> TreeMember | None:
            tree = _tree_pipeline(fitted)
            return TreeMember(*tree, link=link) if tree else None

        return calibrated_members(estimator, member)
    tree = _tree_pipeline(estimator)
    if tree is None:
        return None
    return [TreeMember(*tree, link=expit if isinstance(tree[1], _DECISION) else _identity)]


def _treeshap(model: Any, Z: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Interventional TreeSHAP values (rows x columns) of the model's raw response, in calls
    of at most SHAP_ROWS rows (shap's C code prints a progress bar to stdout from within a
    call that runs past 10 s: short calls keep workers' output clean)."""
    import shap  # loads numba: imported only when a tree model is explained

    explainer = shap.TreeExplainer(
        model, data=background, feature_perturbation="interventional", model_output="raw"
    )
    parts = []
    for first in range(0, len(Z), SHAP_ROWS):
        values = explainer.shap_values(Z[first : first + SHAP_ROWS], check_additivity=False)
        if isinstance(values, list):  # one array per class (older layouts)
            values = values[-1]
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 3:  # rows x columns x classes
            values = values[..., -1]
        parts.append(values)
    return np.concatenate(parts, axis=0) if parts else np.zeros((0, Z.shape[1]))


def tree_shapley(
    *, estimator: Any, sub: pd.DataFrame, fills: list[Any]
) -> tuple[np.ndarray, float] | None:
    """Exact (TreeSHAP) Shapley values of each input of `sub` (rows x inputs, in probability
    points) against the typical row (`fills`), and that row's probability (the baseline);
    None when `estimator` is not a calibrated tree model this reads, a transformer mixes
    inputs, or TreeSHAP's sums disagree with the model."""
    members = tree_members(estimator)
    if members is None or len(sub) == 0:
        return None
    probes, owners = _probe_frame(sub, fills)
    m = len(sub.columns)
    n = len(sub)
    total = np.zeros((n, m))
    baseline = 0.0
    for member in members:
        typical, feeds = _feeds(member, probes, owners, m)
        if (feeds.sum(axis=1) > 1).any():
            return None  # one transformed column fed by two inputs
        background = typical[None, :]
        d_typical = float(member.response(background)[0])
        p_typical = float(member.probability(np.asarray([d_typical]))[0])
        step = max(1, MAX_BYTES // max(8 * len(typical), 1))
        for first in range(0, n, step):
            rows = slice(first, first + step)
            Z = member.transform(sub.iloc[rows])
            try:
                phi_z = _treeshap(member.model, Z, background)
            except Exception as exc:  # a model shap cannot read
                logger.info("reasons: TreeSHAP not usable (%s); sampling", exc)
                return None
            response = member.response(Z)
            delta = response - d_typical
            summed = phi_z.sum(axis=1)
            tolerance = ADDITIVE_TOLERANCE * np.maximum(1.0, np.abs(delta))
            if (np.abs(summed - delta) > tolerance).any():
                logger.warning("reasons: TreeSHAP disagrees with the model; sampling")
                return None
            phi = phi_z @ feeds.astype(np.float64)
            change = member.probability(response) - p_typical
            # The proportional rule over TreeSHAP's own sum (exact addition); a row whose
            # response equals the typical one's has no change to share out.
            small = np.abs(summed) < 1e-12
            ratio = np.where(small, 0.0, change / np.where(small, 1.0, summed))
            mapped = phi * ratio[:, None]
            residue = change - mapped.sum(axis=1)
            biggest = np.argmax(np.abs(mapped), axis=1) if m else np.zeros(0, dtype=np.int64)
            mapped[np.arange(len(mapped)), biggest] += residue
            total[rows] += mapped
        baseline += p_typical
    k = len(members)
    return total / k, baseline / k
