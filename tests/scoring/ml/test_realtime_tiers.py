"""A customer rescored alone gets the tier their probability would have in a completed run."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.ml.tiers import RANK, TierRule, assign_ranked_tiers, assign_tiers_against

RULES = [
    TierRule("critical", 4, mode=RANK, share=0.05),
    TierRule("high", 3, mode=RANK, share=0.10),
    TierRule("medium", 2, mode=RANK, share=0.20),
    TierRule("low", 1, mode=RANK, share=None),
]


def test_ranked_against_a_run_as_if_it_were_one_of_its_customers() -> None:
    run = np.random.default_rng(0).random(1_000)
    tiers = assign_ranked_tiers(probabilities=run, rules=RULES)
    # Each of the run's own customers, taken alone, keeps the tier the run gave them.
    alone = assign_tiers_against(probabilities=run, reference=np.sort(run), rules=RULES)
    assert list(alone) == list(tiers)
    # Just above the lowest critical probability is critical; just below it is high.
    lowest_critical = run[tiers == "critical"].min()
    above, below = lowest_critical + 1e-9, lowest_critical - 1e-9
    got = assign_tiers_against(probabilities=[above, below], reference=np.sort(run), rules=RULES)
    assert list(got) == ["critical", "high"]


def test_without_a_completed_run_nobody_is_ranked_into_a_rank_tier() -> None:
    got = assign_tiers_against(probabilities=[0.99], reference=np.empty(0), rules=RULES)
    assert list(got) == ["low"]
    with pytest.raises(ValueError, match="NaN"):
        assign_tiers_against(probabilities=[np.nan], reference=np.empty(0), rules=RULES)
