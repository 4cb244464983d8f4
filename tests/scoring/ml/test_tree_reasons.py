"""TreeSHAP reasons for tree models (scoring.ml.tree_reasons): exact Shapley values of the
model's margin against the typical customer, mapped to probability points so they add up."""

import numpy as np
import pytest

from scoring.ml.explain import explain_customers
from scoring.ml.pipelines import build_pipeline, select_candidates
from scoring.ml.train import calibrated, reference_values

from .conftest import make_frame
from .test_shapley import _coalition_frame, _enumerated_shapley, _typical


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
@pytest.mark.parametrize("name", ["hgb", "hgb_balanced", "rf_none"])
def test_calibrated_tree_attributions_add_up_exactly(mixed_data, name, method):
    X, y, spec = mixed_data
    pipeline = build_pipeline(spec=spec, candidate=select_candidates(names=name)[0])
    model = calibrated(pipeline=pipeline, method=method, random_state=0).fit(X, y)
    rows, _ = make_frame(300, seed=3)
    reference = reference_values(X=X, spec=spec)
    out = explain_customers(estimator=model, X=rows, spec=spec, reference=reference)
    assert out.method == "exact-tree"
    assert out.errors is None
    np.testing.assert_allclose(out.probabilities, model.predict_proba(rows)[:, 1], atol=1e-12)
    typical = _typical(rows, spec, reference)
    assert out.baseline == pytest.approx(model.predict_proba(typical)[0, 1], abs=1e-12)
    np.testing.assert_allclose(
        out.baseline + out.attributions.sum(axis=1), out.probabilities, rtol=0, atol=1e-9
    )


@pytest.mark.parametrize("name", ["hgb", "rf_none"])
def test_tree_attributions_are_the_shapley_values_of_the_response(mixed_data, name):
    """Against every coalition enumerated: the margin's (the forest's probability's) exact
    Shapley values, mapped by the proportional rule (each times (p - p0) / (d - d0)), on the
    rows where every input differs from the typical customer in at most one transformed
    column (here: the one-hot encoded Contract is typical; a numeric input moves either its
    value or its missing-value indicator). Elsewhere an input's value is the sum of its
    columns' Shapley values, which still adds up (the test above)."""
    X, y, spec = mixed_data
    model = build_pipeline(spec=spec, candidate=select_candidates(names=name)[0]).fit(X, y)
    rows, _ = make_frame(200, seed=5)
    reference = reference_values(X=X, spec=spec)
    out = explain_customers(estimator=model, X=rows, spec=spec, reference=reference)
    assert out.method == "exact-tree"
    typical = _typical(rows, spec, reference)
    groups = [(c,) for c in spec.columns]

    def response(frame):
        if hasattr(model, "decision_function"):
            return model.decision_function(frame)
        return model.predict_proba(frame)[:, 1]

    expected = _enumerated_shapley(
        lambda S: response(_coalition_frame(rows, typical, groups, S)), len(groups)
    )
    d, d0 = response(rows), response(typical)[0]
    change = out.probabilities - out.baseline
    one_column = (rows["Contract"] == typical["Contract"].iloc[0]).to_numpy()
    moved = (np.abs(d - d0) > 1e-6) & one_column
    assert moved.sum() > 40
    mapped = expected[moved] * (change[moved] / (d[moved] - d0))[:, None]
    np.testing.assert_allclose(out.attributions[moved], mapped, rtol=0, atol=1e-6)
