import numpy as np
import pytest

from scoring.ml.tiers import (
    BAND,
    DEFAULT_TIER_NAMES,
    DEFAULT_TIER_RULES,
    PPM,
    RANK,
    TierRule,
    assign_ranked_tiers,
    assign_tiers,
    positions,
    tier_conditions,
    validate_tier_rules,
)


def test_tiers_at_band_edges():
    p = [0.0, 0.2999, 0.3, 0.4999, 0.5, 0.6999, 0.7, 1.0]
    assert assign_tiers(probabilities=p).tolist() == [
        "low",
        "low",
        "medium",
        "medium",
        "high",
        "high",
        "critical",
        "critical",
    ]
    assert assign_tiers(probabilities=[0.1, 0.9], edges=[0.5], names=["calm", "hot"]).tolist() == [
        "calm",
        "hot",
    ]
    with pytest.raises(ValueError):
        assign_tiers(probabilities=[0.1], edges=[0.5], names=["one"])


def test_rank_tiers_follow_the_shares_whatever_the_base_rate():
    # A 75% base churn rate: fixed bands would make most customers critical; ranks do not.
    p = np.random.default_rng(0).beta(6, 2, 10_000)
    tiers = assign_ranked_tiers(probabilities=p)
    counts = {name: int((tiers == name).sum()) for name in DEFAULT_TIER_NAMES}
    assert counts == {"critical": 500, "high": 1000, "medium": 2000, "low": 6500}
    assert p[tiers == "critical"].min() > p[tiers == "high"].max()


def test_tied_probabilities_share_a_tier():
    # Ten customers, three tied at the top: the top 20% (2 customers) cannot split them.
    p = [0.9, 0.9, 0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.01]
    rules = [TierRule("hot", 1, RANK, 0.2), TierRule("cold", 0)]
    assert assign_ranked_tiers(probabilities=p, rules=rules).tolist() == ["hot"] * 3 + ["cold"] * 7
    assert positions(np.array(p)).tolist() == [0, 0, 0, 3, 4, 5, 6, 7, 8, 9]


def test_ranked_tiers_follow_the_positions_rule_exactly():
    """The rank test without a position per value (one sort) gives the tiers of the rule as
    the module states it — position * PPM < running share * n — on random scores with many
    ties, shares that do not divide n, and runs of every small size."""
    rng = np.random.default_rng(7)
    for trial in range(300):
        n = int(rng.integers(0, 60)) if trial % 3 else int(rng.integers(1, 5000))
        p = np.round(rng.random(n), int(rng.integers(1, 4)))  # 1-3 decimals: ties
        shares = rng.dirichlet(np.ones(4))[:3] * rng.uniform(0.2, 1.0)
        rules = [
            TierRule("critical", 3, RANK, float(shares[0])),
            TierRule("high", 2, BAND, min_probability=0.7)
            if trial % 5 == 0
            else TierRule("high", 2, RANK, float(shares[1])),
            TierRule("medium", 1, RANK, float(shares[2])),
            TierRule("low", 0),
        ]
        conditions, rest = tier_conditions(rules)
        position = positions(p).astype(np.int64)
        tests = [
            position * PPM < c.cumulative_ppm * n if c.mode == RANK else p >= c.min_probability
            for c in conditions
        ]
        expected = np.select(tests, [c.name for c in conditions], default=rest) if n else []
        got = assign_ranked_tiers(probabilities=p, rules=rules)
        assert got.tolist() == list(expected), (trial, n)


def test_bands_and_ranks_mix_most_severe_first():
    p = np.linspace(0.01, 1.0, 100)
    rules = [
        TierRule("critical", 3, BAND, min_probability=0.95),  # 6 customers: 0.95 … 1.0
        TierRule("high", 2, RANK, 0.10),  # positions 0–9 not already critical: 4
        TierRule("low", 0),
    ]
    tiers = assign_ranked_tiers(probabilities=p, rules=rules)
    assert (tiers == "critical").sum() == 6 and (tiers == "high").sum() == 4


def test_tier_rules_are_checked_in_words():
    too_much = [TierRule("a", 2, RANK, 0.6), TierRule("b", 1, RANK, 0.5), TierRule("c", 0)]
    assert validate_tier_rules(too_much) == [
        "the rank shares add up to 110.0%: they must add up to 100% or less"
    ]
    overlapping = [
        TierRule("a", 2, BAND, min_probability=0.3),
        TierRule("b", 1, BAND, min_probability=0.5),
        TierRule("c", 0),
    ]
    assert "bands overlap: 'a' starts at 30.0%" in validate_tier_rules(overlapping)[0]
    assert validate_tier_rules([TierRule("a", 1, RANK, None), TierRule("b", 0)]) == [
        "tier 'a': a rank share must be between 0% and 100%"
    ]
    with pytest.raises(ValueError, match=r"add up to 110\.0%"):
        assign_ranked_tiers(probabilities=[0.5], rules=too_much)
    assert validate_tier_rules(DEFAULT_TIER_RULES) == []
