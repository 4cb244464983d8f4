import numpy as np
import pandas as pd
import pytest

from scoring.ml.features import FeatureSpec, infer_feature_spec
from scoring.ml.pipelines import build_pipeline, select_candidates
from scoring.ml.train import calibrated


def make_frame(
    n: int, seed: int = 0, positive_rate: float = 0.2
) -> tuple[pd.DataFrame, np.ndarray]:
    """Small mixed-type churn-like data with a learnable signal and missing values."""
    rng = np.random.default_rng(seed)
    recency = rng.uniform(0, 200, n)
    complaints = rng.poisson(0.5, n).astype(float)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n, p=[0.35, 0.25, 0.4])
    noise = rng.normal(size=n)
    logit = 0.02 * recency + 0.8 * complaints + 1.5 * (contract == "Month-to-month") - 3.0
    target = np.quantile(logit, 1 - positive_rate)
    y = (logit + rng.logistic(size=n) > target + 0.5).astype(int)
    X = pd.DataFrame(
        {
            "recency_days": recency.astype(np.float32),
            "event_complaint_30d": complaints.astype(np.float32),
            "noise": noise.astype(np.float32),
            "Contract": pd.Series(contract, dtype=object),
        }
    )
    X.loc[X.sample(frac=0.05, random_state=seed).index, "noise"] = np.nan
    return X, y


def fitted_calibrated(
    X: pd.DataFrame, y: np.ndarray, spec: FeatureSpec, name: str, method: str = "sigmoid"
):
    """The candidate `name`, calibrated (`method`) and fitted on X, y, as training makes it."""
    pipeline = build_pipeline(spec=spec, candidate=select_candidates(names=name)[0])
    return calibrated(pipeline=pipeline, method=method, random_state=0).fit(X, y)


@pytest.fixture
def mixed_data() -> tuple[pd.DataFrame, np.ndarray, FeatureSpec]:
    X, y = make_frame(1500)
    return X, y, infer_feature_spec(features=X)


@pytest.fixture(autouse=True, scope="session")
def _one_openmp_thread():
    # HistGradientBoosting's OpenMP threads spin-wait; on a shared 2-core runner (pytest
    # alongside other jobs) that makes fits 5-10× slower. One thread is fast and stable.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield
