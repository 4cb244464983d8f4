"""Holdout sizing: minimum detectable effect and the holdout a target effect needs."""

from __future__ import annotations

import pytest

from campaigns.uplift.power import control_percent_for_effect, minimum_detectable_effect


def test_mde_matches_textbook_value_for_10000_customers_10_percent_holdout() -> None:
    # SE = sqrt(0.1 * 0.9 * (1/9000 + 1/1000)) = 0.01; MDE = (1.95996 + 0.84162) * SE.
    result = minimum_detectable_effect(audience_size=10_000, baseline_rate=0.10, control_percent=10)
    assert result.control_n == pytest.approx(1000)
    assert result.standard_error == pytest.approx(0.01)
    assert result.minimum_detectable_effect == pytest.approx(0.028016, abs=1e-6)
    assert result.minimum_detectable_relative_lift == pytest.approx(0.28016, abs=1e-5)


def test_mde_decreases_with_audience_size() -> None:
    sizes = [1_000, 5_000, 20_000, 100_000, 1_000_000]
    effects = [
        minimum_detectable_effect(
            audience_size=size, baseline_rate=0.2, control_percent=10
        ).minimum_detectable_effect
        for size in sizes
    ]
    assert effects == sorted(effects, reverse=True)
    # Quadrupling the audience halves the MDE (SE scales with 1/sqrt(N)).
    assert effects[1] / effects[2] == pytest.approx(2.0)


def test_mde_is_smallest_with_a_50_50_split() -> None:
    def mde(percent: float) -> float:
        return minimum_detectable_effect(
            audience_size=10_000, baseline_rate=0.1, control_percent=percent
        ).minimum_detectable_effect

    assert mde(50) < mde(30) < mde(10) < mde(5)
    assert mde(30) == pytest.approx(mde(70))


def test_required_holdout_inverts_the_mde() -> None:
    mde = minimum_detectable_effect(
        audience_size=50_000, baseline_rate=0.15, control_percent=12.5
    ).minimum_detectable_effect
    holdout = control_percent_for_effect(
        audience_size=50_000, baseline_rate=0.15, target_effect=mde
    )
    assert holdout is not None
    assert holdout.control_percent == pytest.approx(12.5)
    assert holdout.control_n == 6250
    assert holdout.treated_n == 50_000 - 6250


def test_required_holdout_is_none_when_even_a_50_50_split_cannot_detect_the_effect() -> None:
    best = minimum_detectable_effect(
        audience_size=2_000, baseline_rate=0.1, control_percent=50
    ).minimum_detectable_effect
    assert (
        control_percent_for_effect(
            audience_size=2_000, baseline_rate=0.1, target_effect=best * 0.99
        )
        is None
    )
    at_limit = control_percent_for_effect(
        audience_size=2_000, baseline_rate=0.1, target_effect=best * 1.0001
    )
    assert at_limit is not None and 45 < at_limit.control_percent <= 50


@pytest.mark.parametrize(
    "kwargs",
    [
        {"audience_size": 0, "baseline_rate": 0.1, "control_percent": 10},
        {"audience_size": 100, "baseline_rate": 1.0, "control_percent": 10},
        {"audience_size": 100, "baseline_rate": 0.1, "control_percent": 0},
        {"audience_size": 100, "baseline_rate": 0.1, "control_percent": 0.1, "power": 1.0},
    ],
)
def test_mde_rejects_impossible_input(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        minimum_detectable_effect(**kwargs)  # type: ignore[arg-type]
