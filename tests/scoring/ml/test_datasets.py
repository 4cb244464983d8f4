import numpy as np
import pandas as pd
import pytest

from scoring.ml.datasets import (
    MIN_CLASS_ROWS,
    TrainingData,
    one_cutoff_data,
    out_of_time_data,
    split_label_attribute,
    without_columns,
)

LABEL = {"kind": "behaviour", "horizon_days": 90, "as_of": "2024-06-01T00:00:00+00:00"}
TRAIN_CUTOFF = pd.Timestamp("2024-03-03", tz="UTC")
VALID_CUTOFF = pd.Timestamp("2024-06-01", tz="UTC")


def _features(n: int, *, first_id: int = 1, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "recency_days": rng.uniform(0, 300, n).astype(np.float32),
            "attr_gender": pd.Series(rng.choice(["f", "m"], n), dtype=object),
            "event_login_30d": np.full(n, np.nan, dtype=np.float32),  # never seen: no signal
        },
        index=pd.Index(range(first_id, first_id + n), name="customer_id"),
    )
    frame.attrs["btyd_params"] = {"r": 0.2, "alpha": 30.0, "a": 0.8, "b": 2.4}
    return frame


def _labels(n: int, churners: int) -> np.ndarray:
    return np.r_[np.ones(churners, dtype=np.int64), np.zeros(n - churners, dtype=np.int64)]


def test_dropped_and_empty_columns_never_train() -> None:
    features = _features(5)
    # "gender" names attr_gender (the attr_ prefix is optional); the empty column goes too.
    assert list(without_columns(features, drop=["GENDER"]).columns) == ["recency_days"]
    assert list(without_columns(features, drop=()).columns) == ["recency_days", "attr_gender"]


def test_the_label_attribute_is_split_off_every_customer() -> None:
    customers = pd.DataFrame(
        {"customer_id": [1, 2], "attributes": [{"Churn": "Yes", "plan": "a"}, {"plan": "b"}]}
    )
    stripped, values = split_label_attribute(customers, label="Churn")
    assert stripped["attributes"].tolist() == [{"plan": "a"}, {"plan": "b"}]
    assert values.iloc[0] == "Yes" and pd.isna(values.iloc[1])
    assert customers["attributes"][0] == {"Churn": "Yes", "plan": "a"}  # the input is untouched


def _two_cutoffs(
    *, train_churners: int, drop: tuple[str, ...] = ()
) -> tuple[TrainingData, tuple[pd.DataFrame, np.ndarray]]:
    """100 customers at the earlier cutoff, 120 (half churned) at the later one."""
    valid = (_features(120, first_id=50, seed=1), _labels(120, 60))
    data = out_of_time_data(
        train=(_features(100), _labels(100, train_churners)),
        valid=valid,
        train_cutoff=TRAIN_CUTOFF,
        valid_cutoff=VALID_CUTOFF,
        drop=drop,
        label=LABEL,
    )
    return data, valid


def test_enough_of_each_class_gives_an_out_of_time_split() -> None:
    data, valid = _two_cutoffs(train_churners=40, drop=("gender",))
    assert data.validation == "out_of_time"
    assert list(data.X.columns) == list(data.X_valid.columns) == ["recency_days"]
    assert len(data.X) == 100 and len(data.X_valid) == 120 and data.n_rows == 220
    # The champion is compared on the validation rows with every feature.
    assert data.holdout_X is valid[0] and data.holdout_y.tolist() == valid[1].tolist()
    assert data.positive_rate == pytest.approx(100 / 220)
    assert data.btyd_params == valid[0].attrs["btyd_params"]
    assert data.window == {
        "train_cutoff": "2024-03-03T00:00:00+00:00",
        "valid_cutoff": "2024-06-01T00:00:00+00:00",
    }


def test_too_few_of_a_class_falls_back_to_k_fold_at_the_later_cutoff() -> None:
    data, valid = _two_cutoffs(train_churners=MIN_CLASS_ROWS - 1)
    assert data.validation == "stratified" and data.X_valid is None and data.y_valid is None
    assert data.X.index.equals(valid[0].index) and data.y is valid[1]
    assert list(data.X.columns) == ["recency_days", "attr_gender"]
    assert data.window["as_of"] == "2024-06-01T00:00:00+00:00"
    assert "not enough history before 2024-03-03" in data.window["note"]


def test_one_cutoff_data_validates_on_its_own_rows() -> None:
    features = _features(10)
    y = _labels(10, 3)
    data = one_cutoff_data(
        features=features, y=y, drop=(), label={"kind": "attribute"}, window={"as_of": "x"}
    )
    assert data.validation == "stratified"
    assert data.holdout_X is features  # every feature, for the champion
    assert data.n_rows == 10 and data.positive_rate == pytest.approx(0.3)


def test_a_file_dataset_is_compared_on_its_training_rows() -> None:
    X = _features(4)
    data = TrainingData(X=X, y=_labels(4, 1), label={"kind": "file"}, window={})
    assert data.holdout_X is X and data.btyd_params is None
    with pytest.raises(ValueError, match="together"):
        TrainingData(X=X, y=_labels(4, 1), label={}, window={}, X_valid=X)
