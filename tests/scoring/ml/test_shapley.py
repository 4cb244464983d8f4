"""Additive reasons (scoring.ml.shapley, scoring.ml.explain): the attributions add up to the
probability minus the baseline, are the Shapley values they claim to be, and grouped inputs
are never a reason alone."""

import itertools
import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from scoring.ml import linear_reasons
from scoring.ml.explain import explain_customers, waterfall_read
from scoring.ml.features import build_snapshot_features, infer_feature_spec
from scoring.ml.labels import parse_explicit_label
from scoring.ml.phrases import describe
from scoring.ml.pipelines import build_pipeline, select_candidates
from scoring.ml.shapley import FeatureGroups, feature_groups
from scoring.ml.train import reference_values

from .conftest import fitted_calibrated, make_frame

TELCO = Path(__file__).resolve().parents[4] / "shared/data/WA_Fn-UseC_-Telco-Customer-Churn.csv"


def _typical(X, spec, reference):
    return pd.DataFrame(
        {
            c: pd.Series(
                [reference[c] if c in spec.categorical else np.float32(reference[c])],
                dtype=X[c].dtype,
            )
            for c in spec.columns
        }
    )


def _enumerated_shapley(value, n_players):
    """Exact Shapley values by enumerating every coalition: value(S) for frozenset S."""
    phi = np.zeros((len(value(frozenset())), n_players))
    for j in range(n_players):
        others = [k for k in range(n_players) if k != j]
        for size in range(n_players):
            weight = math.factorial(size) * math.factorial(n_players - size - 1)
            weight /= math.factorial(n_players)
            for S in itertools.combinations(others, size):
                phi[:, j] += weight * (value(frozenset(S) | {j}) - value(frozenset(S)))
    return phi


def _coalition_frame(rows, typical, groups, S):
    """Rows with every group outside S at its typical value."""
    frame = rows.copy()
    for g, members in enumerate(groups):
        if g not in S:
            for c in members:
                frame[c] = pd.Series(typical[c].iloc[0], index=frame.index, dtype=rows[c].dtype)
    return frame


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
@pytest.mark.parametrize("name", ["lr_balanced", "lr_spline"])
def test_linear_attributions_add_up_exactly(mixed_data, name, method):
    X, y, spec = mixed_data
    model = fitted_calibrated(X, y, spec, name, method=method)
    rows, _ = make_frame(3000, seed=3)
    rows.loc[rows.index[::7], "Contract"] = None
    reference = reference_values(X=X, spec=spec)
    out = explain_customers(estimator=model, X=rows, spec=spec, reference=reference, threshold=0.2)
    assert out.method == "exact-linear"
    explained = out.explained
    assert explained.sum() > 100
    total = out.baseline + out.attributions[explained].sum(axis=1)
    np.testing.assert_allclose(total, out.probabilities[explained], rtol=0, atol=1e-6)
    typical = model.predict_proba(_typical(rows, spec, reference))[:, 1][0]
    assert out.baseline == pytest.approx(typical, abs=1e-9)
    # The stored waterfall adds up too (6 decimals per number), its steps phrased.
    texts = out.attributions_json()[explained][:200]
    for text, p, reasons in zip(
        texts, out.probabilities[explained], np.asarray(out.reasons, dtype=object)[explained]
    ):
        baseline, steps, rest, method = waterfall_read(json.loads(text), list(reasons))
        assert method == "l" and all(label for label, _ in steps)
        assert baseline + sum(v for _, v in steps) + rest == pytest.approx(p, abs=1e-6)


def test_the_reasons_texts_are_each_rows_reasons_as_json(mixed_data):
    """Rows below the threshold (no reasons) store '[]'; the others their reasons, in order."""
    X, y, spec = mixed_data
    model = fitted_calibrated(X, y, spec, "lr_balanced", method="sigmoid")
    rows, _ = make_frame(2000, seed=5)
    reference = reference_values(X=X, spec=spec)
    out = explain_customers(estimator=model, X=rows, spec=spec, reference=reference, threshold=0.5)
    texts = out.reasons_json()
    assert 0 < out.explained.sum() < len(rows)
    assert [json.loads(t) for t in texts] == [list(r) for r in out.reasons]
    assert set(texts[~out.explained]) == {"[]"}


def test_feeds_found_once_are_reused_and_grow_with_an_unseen_value(mixed_data, monkeypatch):
    """Which transformed columns each input feeds is probed once per loaded model: a later
    batch reuses it (no probing), and a batch holding what the earlier ones never showed
    (Contract "One year", whose one-hot column never moved in the first batch's probes) is
    probed again. Every batch's attributions equal those found by probing it afresh."""
    X, y, spec = mixed_data
    model = fitted_calibrated(X, y, spec, "lr_balanced")
    reference = reference_values(X=X, spec=spec)
    first, _ = make_frame(400, seed=11)
    first["Contract"] = "Month-to-month"
    second, _ = make_frame(400, seed=12)
    second["Contract"] = "Month-to-month"
    third, _ = make_frame(400, seed=13)  # all three contracts
    probes = []
    probe = linear_reasons._probe_frame

    def counted(sub, fills):
        probes.append(sorted(sub["Contract"].unique()))
        return probe(sub, fills)

    monkeypatch.setattr(linear_reasons, "_probe_frame", counted)

    def explain(rows):
        return explain_customers(estimator=model, X=rows, spec=spec, reference=reference)

    outs = [explain(rows) for rows in (first, second, third)]
    # the first batch, then only the third (its "One year" moves an unattributed column)
    assert probes == [["Month-to-month"], ["Month-to-month", "One year", "Two year"]]
    assert all(out.method == "exact-linear" for out in outs)
    linear_reasons._FEEDS.clear()
    for rows, out in zip((first, second, third), outs, strict=True):
        fresh = explain(rows)
        linear_reasons._FEEDS.clear()
        np.testing.assert_allclose(out.attributions, fresh.attributions, rtol=0, atol=1e-12)
        assert out.reasons == fresh.reasons


def test_feeds_are_probed_again_for_the_same_pipeline_fitted_again(mixed_data, monkeypatch):
    """The remembered map belongs to the fitted weights too: the same pipeline object
    fitted on other data (other weights, other columns maybe) is probed afresh."""
    X, _y, spec = mixed_data
    model = build_pipeline(spec=spec, candidate=select_candidates(names="lr_balanced")[0])
    reference = reference_values(X=X, spec=spec)
    rows, _ = make_frame(300, seed=21)
    probes = []
    probe = linear_reasons._probe_frame
    monkeypatch.setattr(linear_reasons, "_probe_frame", lambda *a: probes.append(1) or probe(*a))
    for seed in (0, 0, 1):  # the second fit is the same as the first: nothing new to probe
        other, labels = make_frame(1500, seed=seed)
        model.fit(other, labels)
        out = explain_customers(estimator=model, X=rows, spec=spec, reference=reference)
        assert out.method == "exact-linear"
    assert len(probes) == 2


def test_the_closed_form_is_checked_against_predict_proba_once_per_fitted_model(mixed_data):
    """The closed form is checked against the model's own predict_proba on the first batch
    only; later batches of the same fitted model reuse the verdict and the typical customer's
    probability, and give what a fresh check gives. The model fitted again is checked again
    (its baseline is its new one)."""
    X, y, spec = mixed_data
    model = fitted_calibrated(X, y, spec, "lr_balanced")
    reference = reference_values(X=X, spec=spec)
    calls = []
    predict = model.predict_proba
    model.predict_proba = lambda rows: calls.append(len(rows)) or predict(rows)
    batches = [make_frame(500, seed=s)[0] for s in (31, 32, 33)]

    def explain(rows):
        return explain_customers(estimator=model, X=rows, spec=spec, reference=reference)

    outs = [explain(rows) for rows in batches]
    assert len(calls) == 1 and all(out.method == "exact-linear" for out in outs)
    for rows, out in zip(batches, outs, strict=True):
        linear_reasons._VERIFIED.clear()
        fresh = explain(rows)
        np.testing.assert_array_equal(out.probabilities, fresh.probabilities)
        np.testing.assert_array_equal(out.attributions, fresh.attributions)
        assert out.baseline == fresh.baseline
    assert len(calls) == 4
    typical = predict(_typical(batches[0], spec, reference))[:, 1][0]
    assert outs[0].baseline == pytest.approx(typical, abs=1e-12)

    other, labels = make_frame(1500, seed=5)
    model.fit(other, labels)
    refitted = explain(batches[0])
    assert len(calls) == 5
    assert refitted.baseline == pytest.approx(
        predict(_typical(batches[0], spec, reference))[:, 1][0], abs=1e-12
    )
    assert refitted.baseline != pytest.approx(outs[0].baseline, abs=1e-6)


def test_linear_attributions_are_the_log_odds_shapley_values(mixed_data):
    """An uncalibrated logistic regression: the attributions, divided back by the stated
    proportional rule, are the Shapley values of the log-odds game enumerated coalition by
    coalition through predict_proba."""
    X, y, spec = mixed_data
    model = build_pipeline(spec=spec, candidate=select_candidates(names="lr_balanced")[0]).fit(X, y)
    rows, _ = make_frame(300, seed=5)
    reference = reference_values(X=X, spec=spec)
    out = explain_customers(estimator=model, X=rows, spec=spec, reference=reference)
    assert out.method == "exact-linear"
    typical = _typical(rows, spec, reference)
    groups = [(c,) for c in spec.columns]

    def log_odds(S):
        frame = _coalition_frame(rows, typical, groups, S)
        return logit(model.predict_proba(frame)[:, 1])

    expected = _enumerated_shapley(log_odds, len(groups))
    p, p0 = out.probabilities, out.baseline
    rule = (p - p0) / (logit(p) - logit(p0))
    np.testing.assert_allclose(out.attributions, expected * rule[:, None], rtol=0, atol=1e-6)


def test_sampled_attributions_add_up_and_stay_within_their_stated_error(mixed_data):
    X, y, spec = mixed_data
    # A soft vote of a linear and a boosted model: neither closed form reads it, so sampled.
    candidate = select_candidates(names="blend_lr_hgb")[0]
    model = build_pipeline(spec=spec, candidate=candidate).fit(X, y)
    rows, _ = make_frame(400, seed=7)
    reference = reference_values(X=X, spec=spec)
    out = explain_customers(estimator=model, X=rows, spec=spec, reference=reference)
    assert out.method == "sampled"
    np.testing.assert_allclose(
        out.baseline + out.attributions.sum(axis=1), out.probabilities, rtol=0, atol=1e-9
    )
    typical = _typical(rows, spec, reference)
    groups = [(c,) for c in spec.columns]
    expected = _enumerated_shapley(
        lambda S: model.predict_proba(_coalition_frame(rows, typical, groups, S))[:, 1],
        len(groups),
    )
    error = out.attributions - expected
    # The stated error is a standard error, estimated per value from two antithetic pairs:
    # over many customers the actual errors' spread is within it (1.5×: the estimate's noise).
    stated = np.sqrt(np.mean(out.errors**2))
    assert 0 < np.sqrt(np.mean(error**2)) <= 1.5 * stated


def test_a_transformer_mixing_inputs_is_sampled_not_closed_form(mixed_data, caplog):
    X, y, _ = mixed_data
    X = X.drop(columns="Contract")
    spec = infer_feature_spec(features=X)
    # PCA mixes the inputs: the decision is no sum over inputs, and the check must see it.
    model = make_pipeline(SimpleImputer(), PCA(n_components=2), LogisticRegression()).fit(X, y)
    assert linear_reasons.linear_members(model) is not None
    reference = reference_values(X=X, spec=spec)
    with caplog.at_level(logging.WARNING, logger="scoring.ml.explain"):
        out = explain_customers(estimator=model, X=X.iloc[:300], spec=spec, reference=reference)
    assert "not a sum over inputs" in caplog.text
    assert out.method == "sampled"
    np.testing.assert_allclose(
        out.baseline + out.attributions.sum(axis=1), out.probabilities, rtol=0, atol=1e-9
    )


def _correlated_frame(n, seed=0):
    """tenure and total charges move together (total ≈ tenure × monthly charges)."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n).astype(float)
    monthly = rng.uniform(50, 110, n)
    total = tenure * monthly * rng.uniform(0.95, 1.05, n)
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n)
    logit_ = -0.05 * tenure + 0.01 * monthly + 1.2 * (contract == "Month-to-month") - 0.5
    y = (logit_ + rng.logistic(size=n) > 0).astype(int)
    X = pd.DataFrame(
        {
            "tenure": tenure.astype(np.float32),
            "MonthlyCharges": monthly.astype(np.float32),
            "TotalCharges": total.astype(np.float32),
            "Contract": pd.Series(contract, dtype=object),
        }
    )
    return X, y


@pytest.mark.parametrize("name", ["lr_balanced", "hgb"])
def test_grouped_inputs_are_never_a_reason_alone(name):
    X, y = _correlated_frame(2000)
    spec = infer_feature_spec(features=X)
    groups = feature_groups(X=X, numeric=spec.numeric, columns=spec.columns)
    assert ("tenure", "TotalCharges") in groups.members
    assert ("MonthlyCharges",) in groups.members and ("Contract",) in groups.members
    model = build_pipeline(spec=spec, candidate=select_candidates(names=name)[0]).fit(X, y)
    reference = reference_values(X=X, spec=spec)
    rows = X.iloc[:300] if name == "lr_balanced" else X.iloc[:120]
    out = explain_customers(
        estimator=model, X=rows, spec=spec, reference=reference, groups=groups, top_k=3
    )
    alone = {
        describe(name=c, value=v, reference=reference[c])
        for c in ("tenure", "TotalCharges")
        for v in rows[c].tolist()
    }
    cited = [r for reasons in out.reasons for r in reasons]
    steps = [
        s
        for t, reasons in zip(out.attributions_json(), out.reasons, strict=True)
        for s, _ in waterfall_read(json.loads(t), list(reasons))[1]
    ]
    assert any("TotalCharges" in r for r in cited)
    assert not alone & (set(cited) | set(steps))
    for text in set(cited) | set(steps):
        # A reason naming one member of the group names the other too.
        assert ("tenure" in text) == ("TotalCharges" in text)
    assert "tenure + TotalCharges" in out.columns
    new = [r for r in cited if r.startswith("new customer: tenure ")]
    assert new and all("TotalCharges" in r for r in new)


def test_groups_round_trip_and_cover_new_columns():
    groups = FeatureGroups((("tenure", "TotalCharges"), ("Contract",)))
    again = FeatureGroups.from_dict(groups.to_dict(), ["tenure", "TotalCharges", "Contract", "x"])
    assert again.members == (("tenure", "TotalCharges"), ("Contract",), ("x",))
    assert FeatureGroups.from_dict({}, ["a", "b"]).members == (("a",), ("b",))


@pytest.mark.skipif(not TELCO.exists(), reason=f"telco data set not found at {TELCO}")
def test_the_telco_customers_of_the_audit_read_as_new_customers():
    """7216-EWTRS (tenure 1 month, total charges 100.80) was told "TotalCharges 100.80
    (typical 1,397)"; now the two read together, and the reasons add up."""
    table = pd.read_csv(TELCO)
    y = parse_explicit_label(values=table["Churn"])
    X = build_snapshot_features(table=table, id_column="customerID", label_column="Churn")
    spec = infer_feature_spec(features=X)
    groups = feature_groups(X=X, numeric=spec.numeric, columns=spec.columns)
    assert ("tenure", "TotalCharges") in groups.members
    model = fitted_calibrated(X, y, spec, "lr_balanced")
    reference = reference_values(X=X, spec=spec)
    rows = X.loc[["7216-EWTRS", "7794-JASDG"]]
    out = explain_customers(estimator=model, X=rows, spec=spec, reference=reference, groups=groups)
    np.testing.assert_allclose(
        out.baseline + out.attributions.sum(axis=1), out.probabilities, rtol=0, atol=1e-6
    )
    first = out.reasons[0]
    assert any(r.startswith("new customer: tenure 1") and "TotalCharges" in r for r in first)
    assert not any(r.startswith("TotalCharges") for reasons in out.reasons for r in reasons)
