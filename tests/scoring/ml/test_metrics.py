import numpy as np
import pytest

from scoring.ml.metrics import best_f1_threshold, evaluate_predictions, expected_value_threshold


def test_threshold_rules():
    y = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.2, 0.1, 0.05])
    assert best_f1_threshold(y=y, p=p) == pytest.approx(0.6)
    # saving = 100·0.5·TP − 10·flagged: top 2 → 80, top 4 → 110, all → 70.
    threshold, saving = expected_value_threshold(
        y=y, p=p, offer_cost=10.0, customer_value=100.0, save_rate=0.5
    )
    assert threshold == pytest.approx(0.6) and saving == pytest.approx(110.0)
    threshold, saving = expected_value_threshold(
        y=y, p=p, offer_cost=1000.0, customer_value=100.0, save_rate=0.5
    )
    assert threshold == 1.0 and saving == 0.0
    metrics = evaluate_predictions(y=y, p=p, threshold=0.6)
    assert metrics["confusion_matrix"] == {"tn": 4, "fp": 1, "fn": 0, "tp": 3}
    assert metrics["top_decile_lift"] == pytest.approx(1 / (3 / 8))
