"""A fitted ColumnTransformer's text branches transformed once per distinct row
(scoring.ml.transforms): the same matrix as its own transform, or not used at all."""

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder

from scoring.ml import transforms
from scoring.ml.pipelines import build_pipeline, select_candidates

from .conftest import make_frame


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "plan": pd.Series(rng.choice(["basic", "plus", "pro"], n), dtype=object),
            "channel": pd.Series(rng.choice(["web", "app"], n), dtype=object),
            "age": rng.normal(40, 10, n),
        }
    )
    frame.loc[frame.index[::5], "plan"] = None  # None and NaN: an imputer tells them apart
    frame.loc[frame.index[1::7], "plan"] = np.nan
    frame.loc[frame.index[::11], "age"] = np.nan
    return frame


@pytest.mark.parametrize("name", ["lr_balanced", "lr_spline", "hgb"])
def test_the_model_pipelines_first_step_gives_the_same_matrix(name):
    X, y = make_frame(1200, seed=1)
    from scoring.ml.features import infer_feature_spec

    spec = infer_feature_spec(features=X)
    pipeline = build_pipeline(spec=spec, candidate=select_candidates(names=name)[0]).fit(X, y)
    prepare = pipeline.steps[0][1]
    rows, _ = make_frame(3000, seed=2)
    rows.loc[rows.index[::9], "Contract"] = None
    rows.loc[rows.index[3::13], "Contract"] = "a contract never seen in training"
    fast = transforms.column_transform(prepare, rows)
    assert fast is not None
    np.testing.assert_array_equal(fast, prepare.transform(rows))


def test_text_branches_with_missing_values_of_two_kinds_match_transform():
    train = _frame(500, seed=3)
    ct = ColumnTransformer(
        [
            (
                "text",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="?"),
                    OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                ),
                ["plan", "channel"],
            ),
            (
                "codes",
                OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                ["channel"],
            ),
        ],
        remainder="passthrough",
        sparse_threshold=0.0,
    ).fit(train)
    rows = _frame(4000, seed=4)
    fast = transforms.column_transform(ct, rows)
    assert fast is not None
    np.testing.assert_array_equal(fast, ct.transform(rows))
    calls = []
    text = ct.named_transformers_["text"]
    original = text.transform
    text.transform = lambda frame: calls.append(len(frame)) or original(frame)
    transforms.column_transform(ct, rows)
    assert calls and max(calls) <= 4 * 3 * 2  # distinct (plan incl. None/NaN, channel) pairs


def test_a_branch_that_reads_the_whole_batch_is_caught_and_not_shortcut():
    """A transformer whose output depends on the other rows (here: counting its batch) breaks
    the premise; the check against transform sees it and the plain transform is used."""
    train = _frame(200, seed=5)
    ct = ColumnTransformer(
        [("batch", FunctionTransformer(lambda f: np.full((len(f), 1), float(len(f)))), ["plan"])],
        sparse_threshold=0.0,
    ).fit(train)
    rows = _frame(1000, seed=6)
    assert transforms.column_transform(ct, rows) is None
    np.testing.assert_array_equal(
        transforms.transform_steps([ct], rows), ct.transform(rows).astype(np.float64)
    )
