import pytest

from scoring.ml.tiers import assign_tiers


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
