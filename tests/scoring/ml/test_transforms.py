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


@pytest.mark.parametrize("name", ["lr_balanced", "lr_spline", "hgb"])
def test_the_model_pipelines_later_step_over_an_array_gives_the_same_matrix(name):
    """The second step (one-hot of the category codes the first made, the numbers scaled or
    bent) reads an array: its encoder branch is transformed once per distinct row of codes,
    its other branches over views of their columns — the same matrix as its own transform."""
    X, y = make_frame(1200, seed=1)
    from scoring.ml.features import infer_feature_spec

    spec = infer_feature_spec(features=X)
    pipeline = build_pipeline(spec=spec, candidate=select_candidates(names=name)[0]).fit(X, y)
    encode = pipeline.named_steps["encode"]
    rows, _ = make_frame(3000, seed=2)
    rows.loc[rows.index[3::13], "Contract"] = "a contract never seen in training"
    prepared = pipeline.steps[0][1].transform(rows)
    fast = transforms.column_transform(encode, prepared)
    assert fast is not None
    np.testing.assert_array_equal(fast, encode.transform(prepared))
    if "onehot" in encode.named_transformers_:
        calls = []
        onehot = encode.named_transformers_["onehot"]
        original = onehot.transform
        onehot.transform = lambda a: calls.append(len(a)) or original(a)
        transforms.column_transform(encode, prepared)
        assert calls and max(calls) < 100  # distinct code rows, not 3,000
    np.testing.assert_array_equal(
        transforms.transform_steps([step for _, step in pipeline.steps[:-1]], rows),
        encode.transform(prepared).astype(np.float64),
    )


def test_members_over_the_same_frame_find_its_distinct_rows_once():
    """A model's members transformed one after another over the same frame share the first
    step's distinct rows (kept by columns for that frame only): the text columns are read
    once, and each member's matrix is its own transform's."""
    X, y = make_frame(1200, seed=1)
    from scoring.ml.features import infer_feature_spec

    spec = infer_feature_spec(features=X)
    candidate = select_candidates(names="lr_balanced")[0]
    members = [
        build_pipeline(spec=spec, candidate=candidate).fit(X.iloc[part], y[part])
        for part in (slice(0, 800), slice(400, 1200))
    ]
    rows, _ = make_frame(2000, seed=4)
    for member in members:  # each step checked against its transform once, before counting
        transforms.transform_steps(_steps(member), rows)
    found = []
    distinct_rows = transforms._distinct_rows

    def counted(sub):
        found.append(isinstance(sub, pd.DataFrame))  # the frame's text columns, or codes
        return distinct_rows(sub)

    transforms._distinct_rows = counted
    try:
        shared: dict = {}
        outs = [transforms.transform_steps(_steps(m), rows, shared) for m in members]
    finally:
        transforms._distinct_rows = distinct_rows
    assert found.count(True) == 1 and found.count(False) == len(members)
    for member, out in zip(members, outs, strict=True):
        np.testing.assert_array_equal(out, transforms.transform_steps(_steps(member), rows))


def _steps(pipeline):
    return [step for _, step in pipeline.steps[:-1]]
