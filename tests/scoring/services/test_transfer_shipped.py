"""A transfer method that wins is what scoring runs use: a `source_score` model computes the
source model's score for every scored customer, through the one feature path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scoring.ml.explain import waterfall_read
from scoring.ml.features import FeatureSpec, align_features
from scoring.ml.transfer import TransferEstimator, _logit, prepare
from scoring.models import CustomerScore
from scoring.services.datasets import training_data_from_database
from scoring.services.runs import parse_as_of, range_score, scoring_run_execute
from scoring.services.training import churn_model_activate, churn_model_load, churn_model_train
from scoring.services.transfer import churn_model_transfer_record, transfer_source_load

pytestmark = pytest.mark.django_db


def test_a_source_score_winner_is_shipped_and_scores_with_the_source(
    labelled_customers: Path, artifact_dir: Path
) -> None:
    # The customers have no orders: the shared behavioural features say nothing, while the
    # source model reads `signal` (an attribute): only its score can help the target.
    data = training_data_from_database(label_attribute="Churn")
    source_model = churn_model_train(data=data, candidates=["lr_balanced"], n_splits=3).model
    target = churn_model_train(data=data, candidates=["lr_balanced"], n_splits=3).model
    own_artifact = target.artifact_path
    source, described = transfer_source_load(ref=source_model.version)
    result = churn_model_transfer_record(
        model=target, data=data, source=source, described=described
    )
    assert result.selected == "source_score"
    target.refresh_from_db()
    assert target.transfer["shipped"] == "source_score"
    assert target.transfer["replaced"]["artifact"] == own_artifact
    assert target.artifact_path != own_artifact
    shipped = churn_model_load(model=target)
    assert isinstance(shipped, TransferEstimator) and shipped.method == "source_score"
    assert target.reference["student"]["leaves"]

    churn_model_activate(model=target)
    as_of = parse_as_of(None)
    run = scoring_run_execute(as_of=as_of, run_key="nightly-transfer")
    assert run is not None and run.model_id == target.pk
    stored = dict(CustomerScore.objects.filter(run=run).values_list("customer_id", "probability"))

    # The same customers through the one feature path, scored by hand: the source model's
    # calibrated probability (its own artifact, its own feature spec) as a logit, beside the
    # shared columns, into the fitted target pipeline.
    ranged = range_score(model=target, estimator=shipped, as_of=as_of, ids=list(stored))
    assert ranged is not None
    features, scorable = ranged.features, ranged.scorable
    X = align_features(features=features[scorable], spec=FeatureSpec.from_dict(target.feature_spec))
    source_estimator = churn_model_load(model=source_model)
    source_X = align_features(features=X, spec=FeatureSpec.from_dict(source_model.feature_spec))
    source_p = source_estimator.predict_proba(source_X)[:, 1]
    Z = prepare(X, result.model.columns).assign(source_logit=_logit(source_p))
    by_hand = result.model.estimator.predict_proba(Z)[:, 1]
    scored = np.array([stored[i] for i in X.index])
    np.testing.assert_allclose(scored, by_hand, rtol=0, atol=1e-12)
    # ... and equal to the training pipeline's own scores of the same rows.
    np.testing.assert_allclose(scored, result.model.predict_proba_1(X), rtol=0, atol=1e-12)
    # The source's score matters: without it (a typical source score) they would differ.
    flat = result.model.estimator.predict_proba(Z.assign(source_logit=0.0))[:, 1]
    assert np.abs(scored - flat).max() > 0.1
    # Explained customers' waterfalls add up to the shipped model's probability.
    explained = CustomerScore.objects.filter(run=run).exclude(attributions={})
    assert explained.exists()
    for score in explained[:50]:
        baseline, steps, rest, _method = waterfall_read(score.attributions, score.reasons)
        total = baseline + sum(v for _, v in steps) + rest
        assert total == pytest.approx(score.probability, abs=1e-6)
    assert pd.Series(scored).nunique() > 100
