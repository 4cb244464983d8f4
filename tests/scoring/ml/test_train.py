import json

import numpy as np
import pandas as pd
from imblearn import FunctionSampler
from sklearn.datasets import make_classification
from sklearn.model_selection import train_test_split

from scoring.ml.features import FeatureSpec, infer_feature_spec
from scoring.ml.pipelines import Candidate, build_pipeline, select_candidates
from scoring.ml.train import calibrated, make_splits, train_and_select

from .conftest import make_frame


def test_shuffled_labels_give_chance_level_auc_with_smote():
    # If SMOTE ran before the split, synthetic neighbours of validation rows would sit in
    # the training data and a forest would score far above 0.5 on pure noise.
    X, y = make_frame(1200, seed=3)
    y = np.random.default_rng(1).permutation(y)
    spec = infer_feature_spec(features=X)
    rf_smote = Candidate("rf_smote", "smote", "rf", {"n_estimators": 60, "min_samples_leaf": 1})
    result = train_and_select(
        X=X, y=y, spec=spec, candidates=[rf_smote], n_splits=4, importance_sample=0
    )
    auc = result.candidates[0].metrics["roc_auc"]
    assert 0.44 <= auc <= 0.56
    assert 0.44 <= result.metrics["roc_auc"] <= 0.56


_SEEN: list[np.ndarray] = []


def _record(X, y):
    _SEEN.append(np.asarray(X[:, 0]).astype(int).copy())
    return X, y


def test_resampling_never_sees_validation_rows():
    X, y = make_frame(600, seed=5)
    X = X.drop(columns=["Contract"])
    X.insert(0, "row_id", np.arange(len(X), dtype=np.float32))
    X["noise"] = X["noise"].fillna(0.0)
    spec = FeatureSpec(numeric=tuple(X.columns), categorical=())
    recorder = Candidate("recorder", FunctionSampler(func=_record, validate=False), "lr")
    _SEEN.clear()
    train_and_select(X=X, y=y, spec=spec, candidates=[recorder], n_splits=5, importance_sample=0)
    splits = make_splits(y=y, n_splits=5, random_state=0)
    # 5 candidate fits + 5 outer × 3 calibration fits, then 3 fits of the final model.
    assert len(_SEEN) == 5 + 15 + 3
    for k, seen in enumerate(_SEEN[:5]):
        assert set(seen) == set(splits[k][0])
    for seen in _SEEN[5:20]:
        assert any(
            set(seen) <= set(train) and not set(seen) & set(valid) for train, valid in splits
        )


def test_calibration_fixes_smote_probabilities():
    X, y = make_classification(
        n_samples=6000, n_features=8, n_informative=4, weights=[0.93], flip_y=0.03, random_state=0
    )
    X = pd.DataFrame(X, columns=[f"f{i}" for i in range(8)]).astype(np.float32)
    spec = infer_feature_spec(features=X)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, stratify=y, random_state=0)
    candidate = select_candidates(names="lr_smote")[0]
    raw = build_pipeline(spec=spec, candidate=candidate).fit(X_tr, y_tr)
    cal = calibrated(
        pipeline=build_pipeline(spec=spec, candidate=candidate), method="sigmoid", random_state=0
    )
    cal.fit(X_tr, y_tr)
    brier_raw = np.mean((raw.predict_proba(X_te)[:, 1] - y_te) ** 2)
    brier_cal = np.mean((cal.predict_proba(X_te)[:, 1] - y_te) ** 2)
    assert brier_cal < brier_raw * 0.9


def test_training_result_selects_by_pr_auc_and_serialises(mixed_data):
    X, y, spec = mixed_data
    candidates = select_candidates(names="lr_balanced,hgb")
    result = train_and_select(X=X, y=y, spec=spec, candidates=candidates, n_splits=3)
    best = max(result.candidates, key=lambda c: c.metrics["pr_auc"])
    assert result.selected == best.name
    assert result.metrics["roc_auc"] > 0.75
    assert set(result.metrics["confusion_matrix"]) == {"tn", "fp", "fn", "tp"}
    assert sum(b["count"] for b in result.metrics["calibration_curve"]) == len(y)
    assert result.candidates[0].permutation_importance
    assert next(iter(result.candidates[0].permutation_importance)) != "noise"
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["selected"] == result.selected
    assert payload["library_versions"]["scikit-learn"]
    proba = result.estimator.predict_proba(X.head(5))[:, 1]
    assert ((proba >= 0) & (proba <= 1)).all()


def test_out_of_time_validation_scores_only_the_later_cutoff(mixed_data):
    X, y, spec = mixed_data
    X_valid, y_valid = make_frame(400, seed=9)
    result = train_and_select(
        X=X,
        y=y,
        spec=spec,
        candidates=select_candidates(names="lr_balanced"),
        X_valid=X_valid,
        y_valid=y_valid,
        importance_sample=200,
    )
    assert result.validation["scheme"] == "holdout"
    assert result.metrics["n"] == len(y_valid)


def test_time_splits_train_only_on_earlier_cutoffs():
    times = pd.to_datetime(["2024-01-01"] * 4 + ["2024-02-01"] * 4 + ["2024-03-01"] * 4)
    y = np.array([0, 1] * 6)
    splits = make_splits(y=y, cv="time", time_index=times, n_splits=5)
    assert [(len(tr), len(va)) for tr, va in splits] == [(4, 4), (8, 4)]
    for train, valid in splits:
        assert times[train].max() < times[valid].min()
