from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from scoring.ml.artifacts import (
    ALLOWED_TYPES,
    ArtifactIntegrityError,
    UntrustedArtifactError,
    load_artifact,
    save_artifact,
)
from scoring.ml.pipelines import EXTENDED_CANDIDATES, build_pipeline

from .conftest import fitted_calibrated, make_frame


@pytest.fixture
def fitted(mixed_data):
    X, y, spec = mixed_data
    model = fitted_calibrated(X, y, spec, "lr_smote")
    return model, X


def test_artifact_round_trip_gives_identical_predictions(fitted, tmp_path):
    model, X = fitted
    path = tmp_path / "model.skops"
    digest = save_artifact(estimator=model, path=path)
    loaded = load_artifact(path=path, sha256=digest)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_tampered_artifact_is_refused(fitted, tmp_path):
    model, _ = fitted
    path = tmp_path / "model.skops"
    digest = save_artifact(estimator=model, path=path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="SHA-256"):
        load_artifact(path=path, sha256=digest)


def test_types_outside_the_allow_list_are_refused(fitted, tmp_path):
    model, _ = fitted
    path = tmp_path / "model.skops"
    digest = save_artifact(estimator=model, path=path)
    with pytest.raises(UntrustedArtifactError, match="CalibratedClassifier"):
        load_artifact(path=path, sha256=digest, allowed_types={"imblearn.pipeline.Pipeline"})


def test_unknown_category_and_missing_values_at_scoring_time_do_not_crash(fitted):
    model, X = fitted
    new = X.head(3).copy()
    new.loc[new.index[0], "Contract"] = "Lifetime deal"
    new.loc[new.index[1], "Contract"] = np.nan
    new.loc[new.index[2], "recency_days"] = np.nan
    proba = model.predict_proba(new)[:, 1]
    assert np.isfinite(proba).all()


def test_every_extended_candidate_round_trips_within_the_allow_list():
    X, y = make_frame(300, seed=2, positive_rate=0.3)
    from scoring.ml.features import infer_feature_spec

    spec = infer_feature_spec(features=X)
    small = {"n_estimators": 10}
    for candidate in EXTENDED_CANDIDATES:
        if candidate.classifier in ("rf", "brf", "easy"):
            candidate = replace(candidate, params={**candidate.params, **small})
        if candidate.classifier in ("hgb", "blend"):
            key = "hgb__max_iter" if candidate.classifier == "blend" else "max_iter"
            candidate = replace(candidate, params={**candidate.params, key: 20})
        model = build_pipeline(spec=spec, candidate=candidate).fit(X, y)
        data = sio.dumps(model)
        untrusted = set(sio.get_untrusted_types(data=data))
        assert untrusted <= ALLOWED_TYPES, (candidate.name, untrusted - ALLOWED_TYPES)
        loaded = sio.loads(data, trusted=sorted(untrusted))
        np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))
    assert isinstance(X, pd.DataFrame)
