"""Nested selection: the reported F1, precision and recall come from candidates and
thresholds chosen without the rows they are measured on."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.ml.features import infer_feature_spec
from scoring.ml.metrics import best_f1_threshold, evaluate_predictions
from scoring.ml.pipelines import select_candidates
from scoring.ml.train import assessment_folds, make_splits, train_and_select
from tests.scoring.ml.conftest import make_frame


def _train(y_valid: np.ndarray, X, y, X_valid, spec):  # type: ignore[no-untyped-def]
    return train_and_select(
        X=X,
        y=y,
        X_valid=X_valid,
        y_valid=y_valid,
        spec=spec,
        candidates=select_candidates(names="lr_balanced,hgb_balanced"),
        importance_sample=0,
    )


def test_out_of_time_thresholds_ignore_the_rows_they_are_measured_on() -> None:
    """Flipping labels of one assessment fold of the validation rows leaves that fold's
    candidate and threshold unchanged, and changes the other folds' (so it can fail)."""
    X, y = make_frame(400, seed=1)
    X_valid, y_valid = make_frame(350, seed=2)
    spec = infer_feature_spec(features=X)
    first = _train(y_valid, X, y, X_valid, spec)
    n = len(X)
    splits = make_splits(y=np.r_[y, y_valid], n_train=n)
    evaluated = splits[0][1]
    folds = assessment_folds(
        splits=splits, evaluated=evaluated, y=np.r_[y, y_valid], n_splits=5, random_state=0
    )
    assert len(folds) == 5
    changed = y_valid.copy()
    rows = folds[0]
    changed[rows[: len(rows) // 2]] = 1 - changed[rows[: len(rows) // 2]]
    second = _train(changed, X, y, X_valid, spec)
    a, b = first.metrics["nested"]["folds"], second.metrics["nested"]["folds"]
    assert a[0] == b[0]
    assert any(x["threshold"] != z["threshold"] for x, z in zip(a[1:], b[1:], strict=True))
    # The reported figures are not those of the threshold chosen on every row.
    assert first.metrics["nested"]["out_of_sample"] is True
    p = first.oof_probabilities
    assert p is not None
    in_sample = evaluate_predictions(y=y_valid, p=p, threshold=best_f1_threshold(y=y_valid, p=p))
    assert first.metrics["f1"] <= in_sample["f1"] + 1e-12
    assert first.metrics["in_sample"]["f1"] == pytest.approx(in_sample["f1"])


def test_kfold_thresholds_are_chosen_on_the_other_folds() -> None:
    """With one candidate, each fold's threshold is the max-F1 cut of the other folds'
    calibrated out-of-fold probabilities, and the reported F1 is that of those cuts."""
    X, y = make_frame(500, seed=4)
    spec = infer_feature_spec(features=X)
    result = train_and_select(
        X=X, y=y, spec=spec, candidates=select_candidates(names="lr_balanced"), importance_sample=0
    )
    p = result.oof_probabilities
    assert p is not None
    splits = make_splits(y=y, n_splits=5, random_state=0)
    evaluated = np.unique(np.concatenate([va for _, va in splits]))
    folds = assessment_folds(splits=splits, evaluated=evaluated, y=y, n_splits=5, random_state=0)
    cut = np.empty(len(y))
    for rows, reported in zip(folds, result.metrics["nested"]["folds"], strict=True):
        others = np.setdiff1d(np.arange(len(y)), rows)
        t = best_f1_threshold(y=y[others], p=p[others])
        assert reported["threshold"] == t
        cut[rows] = t
    expected = evaluate_predictions(y=y, p=p, threshold=cut)
    for name in ("f1", "precision", "recall"):
        assert result.metrics[name] == expected[name]
