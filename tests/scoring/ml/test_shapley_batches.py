"""The sampled attributions predict every permutation's coalitions together, in calls of at
most `batch_rows` rows: the same values and errors whatever the batch size, and few calls."""

import numpy as np
import pandas as pd

from scoring.ml.phrases import as_number
from scoring.ml.pipelines import build_pipeline, select_candidates
from scoring.ml.shapley import sampled_shapley
from scoring.ml.train import reference_values

from .conftest import make_frame


class CountingModel:
    """A fitted model whose predict_proba calls (and their rows) are counted."""

    def __init__(self, model):
        self.model, self.calls, self.rows = model, 0, []

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        self.calls += 1
        self.rows.append(len(X))
        return self.model.predict_proba(X)


def test_batches_change_nothing_but_the_number_of_calls(mixed_data):
    X, y, spec = mixed_data
    model = build_pipeline(spec=spec, candidate=select_candidates(names="hgb")[0]).fit(X, y)
    rows, _ = make_frame(150, seed=11)
    rows = rows.loc[:, list(spec.columns)]
    reference = reference_values(X=X, spec=spec)
    typical = pd.DataFrame(
        {
            c: pd.Series(
                [reference[c] if c in spec.categorical else np.float32(as_number(reference[c]))],
                dtype=rows[c].dtype,
            )
            for c in spec.columns
        }
    )
    base = model.predict_proba(rows)[:, 1]
    groups = [[j] for j in range(len(spec.columns))]
    results = {}
    for batch_rows in (200_000, 97):
        counting = CountingModel(model)
        results[batch_rows] = (
            sampled_shapley(
                estimator=counting, sub=rows, typical=typical, base=base, groups=groups,
                batch_rows=batch_rows,
            ),
            counting,
        )  # fmt: skip
    (big, big_calls), (small, small_calls) = results[200_000], results[97]
    np.testing.assert_array_equal(big.values, small.values)
    np.testing.assert_array_equal(big.errors, small.errors)
    np.testing.assert_allclose(big.baseline + big.values.sum(axis=1), base, rtol=0, atol=1e-9)
    # One call for the typical customer, then every coalition of every permutation at once.
    asked = sum(big_calls.rows) - 1
    assert 0 < asked <= 4 * (len(groups) - 1) * len(rows)
    assert big_calls.calls == 2
    assert small_calls.calls == 1 + -(-asked // 97)
    assert max(small_calls.rows) <= 97
