"""Transfer: with few target labels it helps on average across seeds, with many it does no
harm beyond noise, and a source from an unrelated shop is not chosen."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring.ml.transfer import (
    SourceModel,
    _linear,
    domain_weights,
    evaluate,
    fit_method,
    prepare,
    shared_columns,
    transfer_select,
)

COLUMNS = (
    "orders_365d",
    "revenue_365d",
    "recency_days",
    "tenure_days",
    "interorder_mean_days",
    "refund_share",
    "p_alive",
)
RELATED = np.array([-0.8, -0.3, 1.2, -0.4, 0.5, 0.3, -0.6])
TARGET = RELATED + np.array([0.2, 0.0, -0.2, 0.1, 0.0, 0.2, 0.0])


def unrelated_beta() -> np.ndarray:
    """A churn rule orthogonal to the target's: its scores carry no information there."""
    v = np.random.default_rng(7).normal(size=len(TARGET))
    v -= v @ TARGET / (TARGET @ TARGET) * TARGET
    return 2.0 * v / np.linalg.norm(v)


def shop(
    n: int, *, seed: int, beta: np.ndarray, shift: float = 0.0
) -> tuple[pd.DataFrame, np.ndarray]:
    """A shop's customers over the shared behavioural features; churn follows `beta` on the
    standardised latent traits; `shift` moves the shop's customers (a different population)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, len(COLUMNS))) + shift * np.array([0.5, 0.5, -0.5, 0.3, 0, 0, 0.4])
    X = pd.DataFrame(
        {
            "orders_365d": np.expm1(np.clip(1.2 + 0.6 * z[:, 0], 0, None)).round(),
            "revenue_365d": np.expm1(4 + 0.8 * z[:, 1] + 0.3 * z[:, 0]),
            "recency_days": np.exp(3.5 + 0.8 * z[:, 2]),
            "tenure_days": np.exp(5.5 + 0.5 * z[:, 3]),
            "interorder_mean_days": np.exp(3.8 + 0.5 * z[:, 4]),
            "refund_share": np.clip(0.05 + 0.05 * z[:, 5], 0, 1),
            "p_alive": 1 / (1 + np.exp(-z[:, 6])),
        }
    ).astype(np.float32)
    X.loc[X.sample(frac=0.05, random_state=seed).index, "interorder_mean_days"] = np.nan
    y = (rng.random(n) < 1 / (1 + np.exp(-(z @ beta - 1.0)))).astype(np.int64)
    return X, y


def source_model(beta: np.ndarray, *, name: str, seed: int = 99) -> SourceModel:
    X, y = shop(1500, seed=seed, beta=beta, shift=1.0)
    est = _linear().fit(prepare(X, COLUMNS), y)
    return SourceModel(
        name=name, predict=lambda F: est.predict_proba(prepare(F, COLUMNS))[:, 1], X=X, y=y
    )


@pytest.fixture(scope="module")
def related() -> SourceModel:
    return source_model(RELATED, name="related")


@pytest.fixture(scope="module")
def test_rows() -> tuple[pd.DataFrame, np.ndarray]:
    return shop(2000, seed=12345, beta=TARGET)


def _target(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    return shop(n, seed=seed, beta=TARGET)


def _compare(n: int, seeds: range, source: SourceModel, test_rows) -> tuple[np.ndarray, list[str]]:  # type: ignore[no-untyped-def]
    X_test, y_test = test_rows
    gains, chosen = [], []
    for seed in seeds:
        X, y = _target(n, seed)
        result = transfer_select(X=X, y=y, source=source, random_state=seed)
        alone = fit_method("target_only", X=X, y=y, source=None, columns=result.model.columns)
        kept = evaluate(y=y_test, p=result.model.predict_proba_1(X_test))
        base = evaluate(y=y_test, p=alone.predict_proba_1(X_test))
        gains.append(base["log_loss"] - kept["log_loss"])
        chosen.append(result.selected)
    return np.asarray(gains), chosen


def test_few_labels_transfer_is_at_least_as_good_on_average(related, test_rows) -> None:  # type: ignore[no-untyped-def]
    gains, chosen = _compare(100, range(10), related, test_rows)
    assert gains.mean() > 0, (gains, chosen)
    assert set(chosen) - {"target_only"}  # transfer was chosen at least once


def test_many_labels_no_harm_beyond_noise(related, test_rows) -> None:  # type: ignore[no-untyped-def]
    gains, _ = _compare(1000, range(3), related, test_rows)
    # log loss of the kept model within noise of the target alone (or better)
    assert gains.mean() > -0.005, gains


def test_unrelated_source_is_not_chosen(test_rows) -> None:  # type: ignore[no-untyped-def]
    unrelated = source_model(unrelated_beta(), name="unrelated")
    _, chosen = _compare(300, range(4), unrelated, test_rows)
    assert chosen == ["target_only"] * 4, chosen


def test_no_source_means_target_only_and_weights_follow_the_target() -> None:
    X, y = _target(200, 1)
    assert transfer_select(X=X, y=y, source=None).selected == "target_only"
    assert shared_columns(X) == COLUMNS
    Xs, _ = shop(2000, seed=5, beta=RELATED, shift=1.0)
    w = domain_weights(X_source=Xs, X_target=X, columns=COLUMNS)
    # Source rows that look like the target (low shift score) weigh more.
    look = prepare(Xs, COLUMNS)["recency_days"].to_numpy()
    assert np.corrcoef(look, w)[0, 1] > 0.2


@pytest.mark.parametrize("method", ["source_score", "prior", "weighted_pooling"])
def test_the_kept_method_ships_as_one_artifact_that_scores_the_same(method, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What the registry stores (`to_estimator`, through skops and its allow-list) scores the
    target's rows exactly as the fitted method; the prior's stored logistic regression is the
    fitted coefficients; source_score needs no source beside it."""
    from scipy.special import expit

    from scoring.ml import artifacts
    from scoring.ml.features import align_features, infer_feature_spec

    X_source, y_source = shop(800, seed=3, beta=RELATED, shift=1.0)
    spec = infer_feature_spec(features=X_source)
    estimator = _linear().fit(align_features(features=X_source, spec=spec), y_source)
    source = SourceModel(
        name="related",
        predict=lambda F: estimator.predict_proba(align_features(features=F, spec=spec))[:, 1],
        X=X_source,
        y=y_source,
        estimator=estimator,
        spec=spec.to_dict(),
    )
    X, y = _target(300, seed=4)
    X_test, _ = _target(500, seed=5)
    model = fit_method(method, X=X, y=y, source=source, columns=COLUMNS, X_unlabelled=X_test)
    path = tmp_path / "shipped.skops"
    sha = artifacts.save_artifact(estimator=model.to_estimator(), path=path)
    loaded = artifacts.load_artifact(path=path, sha256=sha)
    assert loaded.method == method
    assert (loaded.source is not None) == (method == "source_score")
    expected = model.predict_proba_1(X_test)
    np.testing.assert_allclose(loaded.predict_proba(X_test)[:, 1], expected, rtol=0, atol=1e-12)
    if method == "prior":
        w = np.asarray(model.extras["fit"])
        Z = model.estimator[:-1].transform(prepare(X_test, COLUMNS))
        np.testing.assert_allclose(expit(w[0] + Z @ w[1:]), expected, rtol=0, atol=1e-12)
