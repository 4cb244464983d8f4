import numpy as np
import pandas as pd
import pytest

from scoring.ml.drift import (
    DriftReference,
    build_drift_reference,
    counts_from_cumulative,
    feature_counts,
    population_stability,
)
from scoring.ml.features import FeatureSpec

SPEC = FeatureSpec(numeric=("x",), categorical=("plan",))


def _frame(n: int, shift: float, seed: int, plans=("a", "b", "c"), p=(0.5, 0.3, 0.2)):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"x": rng.normal(shift, 1, n), "plan": pd.Series(rng.choice(plans, n, p=p), dtype=object)}
    )


def test_psi_is_near_zero_for_the_same_distribution():
    train = _frame(20_000, 0.0, 0)
    scores = np.random.default_rng(0).beta(2, 5, 20_000)
    reference = build_drift_reference(X=train, spec=SPEC, scores=scores)
    report = population_stability(
        reference=reference,
        X=_frame(20_000, 0.0, 1),
        scores=np.random.default_rng(1).beta(2, 5, 20_000),
    )
    assert report.psi["x"] < 0.01 and report.psi["plan"] < 0.01 and report.score_psi < 0.01
    assert report.status == "ok"


def test_psi_flags_shifted_features_and_new_categories():
    reference = build_drift_reference(X=_frame(20_000, 0.0, 0), spec=SPEC)
    shifted = _frame(20_000, 1.0, 1, plans=("a", "z"), p=(0.5, 0.5))
    report = population_stability(reference=reference, X=shifted)
    assert report.psi["x"] > 0.25 and report.feature_status["x"] == "alert"
    assert report.psi["plan"] > 0.25
    assert report.status == "alert"
    again = DriftReference.from_dict(reference.to_dict())
    assert population_stability(reference=again, X=shifted).psi == pytest.approx(report.psi)


def test_score_counts_from_a_database_give_the_same_psi_as_the_values():
    reference = build_drift_reference(
        X=_frame(5_000, 0.0, 0), spec=SPEC, scores=np.random.default_rng(0).beta(2, 5, 5_000)
    )
    scores = np.random.default_rng(3).beta(2.5, 5, 8_000)
    scores[::97] = np.nan
    scores[5] = reference.score.edges[2]  # on an edge: counted in the bin it closes
    edges = reference.score.edges
    counts = counts_from_cumulative(
        [int(np.sum(scores <= e)) for e in edges],
        present=int(np.sum(~np.isnan(scores))),
        missing=int(np.sum(np.isnan(scores))),
    )
    X = _frame(1_000, 0.0, 4)
    from_values = population_stability(reference=reference, X=X, scores=scores)
    from_counts = population_stability(reference=reference, X=X, score_counts=counts)
    assert from_counts.score_psi == pytest.approx(from_values.score_psi, abs=1e-15)


def test_feature_counts_of_chunks_add_up_to_the_whole():
    reference = build_drift_reference(X=_frame(5_000, 0.0, 0), spec=SPEC)
    X = _frame(3_000, 0.4, 5, plans=("a", "b", "d"))
    X.loc[X.index[::50], "x"] = np.nan
    parts = [
        feature_counts(reference=reference, X=X.iloc[i : i + 1_000]) for i in (0, 1_000, 2_000)
    ]
    summed = {k: np.sum([p[k] for p in parts], axis=0) for k in parts[0]}
    whole = population_stability(reference=reference, X=X)
    chunked = population_stability(reference=reference, counts=summed, n_rows=len(X))
    assert chunked.psi == pytest.approx(whole.psi, abs=1e-15)
    assert chunked.n_rows == whole.n_rows == 3_000 and whole.psi["x"] > 0.1


def test_a_population_scored_at_its_own_cutoff_reads_stable_and_a_shifted_one_alert():
    """The reference is the final model's scores and the features of the latest cutoff only:
    training at two cutoffs one horizon apart (recency moves by the horizon) must not make the
    validation population itself look drifted."""
    from scoring.ml.features import infer_feature_spec
    from scoring.ml.pipelines import select_candidates
    from scoring.ml.train import train_and_select

    from .conftest import make_frame

    X_train, y_train = make_frame(1500, seed=1)
    X_latest, y_latest = make_frame(1500, seed=2)
    X_latest["recency_days"] += 90  # the later cutoff: everyone's history is a horizon longer
    spec = infer_feature_spec(features=X_train)
    result = train_and_select(
        X=X_train,
        y=y_train,
        spec=spec,
        candidates=select_candidates(names="lr_balanced"),
        X_valid=X_latest,
        y_valid=y_latest,
        n_splits=3,
        importance_sample=0,
    )
    reference = DriftReference.from_dict(result.training_summary.to_dict())
    assert reference.n_rows == len(X_latest)

    def drift(X: pd.DataFrame):
        scores = result.estimator.predict_proba(X[list(spec.columns)])[:, 1]
        return population_stability(reference=reference, X=X, scores=scores)

    same = drift(X_latest)
    assert same.status == "ok" and same.score_psi < 0.1
    assert max(same.psi.values()) < 0.1
    shifted = X_latest.assign(
        recency_days=X_latest["recency_days"] + 150,
        event_complaint_30d=X_latest["event_complaint_30d"] + 2,
    )
    moved = drift(shifted)
    assert moved.status == "alert" and moved.feature_status["recency_days"] == "alert"
    assert moved.score_psi > 0.25
