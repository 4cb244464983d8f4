"""The synthetic population (campaigns.uplift.simulation): its segments behave as documented,
so the policy tests built on it test what they claim."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from campaigns.uplift.models import CONTROL_ARM
from campaigns.uplift.simulation import (
    randomised_history,
    simulate_population,
    true_outcome,
)


@pytest.fixture(scope="module")
def population():  # type: ignore[no-untyped-def]
    return simulate_population(n=20_000, seed=3)


def test_the_segments_have_the_documented_effects_and_risks(population) -> None:  # type: ignore[no-untyped-def]
    lift = population.true_uplift()
    by_segment = lift.groupby(population.segment).mean()
    risk = population.risk.groupby(population.segment).mean()
    share = population.segment.value_counts(normalize=True)
    # Sleeping dogs: every action lowers P(retained), and only for them.
    harmed = population.harmed()
    dogs = population.segment == "sleeping_dog"
    assert harmed[dogs].all().all()
    assert not harmed[~dogs].any().any()
    # Persuadables gain most; lost causes and sure things little.
    assert (by_segment.loc["persuadable"] > by_segment.loc["lost_cause"]).all()
    assert (by_segment.loc["persuadable"] > by_segment.loc["sure_thing"]).all()
    assert by_segment.loc["lost_cause"].max() < 0.01
    # Risk is correlated with the effect but not equal to it: the riskiest segments are the
    # ones an action does not help.
    assert risk["lost_cause"] > risk["sleeping_dog"] > risk["persuadable"] > risk["sure_thing"]
    assert share["persuadable"] == pytest.approx(0.49, abs=0.03)
    assert share["sleeping_dog"] == pytest.approx(0.13, abs=0.02)
    assert share["lost_cause"] == pytest.approx(0.12, abs=0.02)


def test_effects_depend_on_observable_features(population) -> None:  # type: ignore[no-untyped-def]
    lift = population.true_uplift()
    f = population.features
    persuadable = population.segment == "persuadable"
    # The SMS works only on recent buyers; the discount more for discount buyers.
    assert lift.loc[persuadable & (f["days_since_last_order"] >= 45), "rule-2"].abs().max() == 0
    heavy = persuadable & (f["discount_share"] > 0.5)
    light = persuadable & (f["discount_share"] < 0.15)
    assert lift.loc[heavy, "rule-1"].mean() > 1.5 * lift.loc[light, "rule-1"].mean()
    assert (population.segment[f["auto_renew"] == 1].isin(["sleeping_dog", "lost_cause"])).all()


def test_the_population_is_deterministic_for_a_seed() -> None:
    first, again = simulate_population(n=500, seed=9), simulate_population(n=500, seed=9)
    pd.testing.assert_frame_equal(first.retained, again.retained)
    pd.testing.assert_frame_equal(first.features, again.features)
    assert not first.retained.equals(simulate_population(n=500, seed=10).retained)


def test_the_history_is_randomised_and_its_outcomes_follow_the_truth(population) -> None:  # type: ignore[no-untyped-def]
    history = randomised_history(population, control_share=0.25, seed=4)
    shares = history["arm"].value_counts(normalize=True)
    assert shares[CONTROL_ARM] == pytest.approx(0.25, abs=0.02)
    for action in population.actions:
        assert shares[action] == pytest.approx(0.25, abs=0.02)
    # Observed retention per arm matches the true mean probability of that arm's customers.
    for arm, rows in history.groupby("arm"):
        truth = population.retained.loc[rows.index, arm].mean()
        assert rows["retained"].mean() == pytest.approx(truth, abs=0.02)


def test_true_outcome_counts_treated_rows_only(population) -> None:  # type: ignore[no-untyped-def]
    dog = population.segment.index[population.segment == "sleeping_dog"][0]
    persuadable = population.segment.index[population.segment == "persuadable"][0]
    decisions = pd.DataFrame(
        {"action": ["rule-3", "rule-1", "rule-1"], "control": [False, False, True]},
        index=[dog, persuadable, persuadable + 1],
    )
    outcome = true_outcome(population, decisions)
    lift = population.true_uplift()
    expected = (
        lift.at[dog, "rule-3"] * population.value[dog]
        + lift.at[persuadable, "rule-1"] * population.value[persuadable]
        - population.costs["rule-3"]
        - population.costs["rule-1"]
    )
    assert outcome.contacted == 2
    assert outcome.harmed == 1
    assert outcome.increment == pytest.approx(expected)
    assert outcome.cost == pytest.approx(population.costs["rule-3"] + population.costs["rule-1"])
    assert np.isfinite(outcome.retained)


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="n: expected a positive number"):
        simulate_population(n=0)
    with pytest.raises(ValueError, match="control_share"):
        randomised_history(simulate_population(n=10), control_share=1.0)
