"""Metrics of churn predictions and the thresholds chosen from them.

Pure numpy/scikit-learn: ranking (ROC-AUC, PR-AUC, top-decile lift), probability (Brier, log
loss, calibration curve) and decision metrics at a threshold; the max-F1 and max-expected-
saving thresholds, each computed in one sort over the distinct scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

CALIBRATION_BINS = 10


def _sorted_cumulative(
    y: np.ndarray, p: np.ndarray, gain: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct score t (descending): t, Σgain, TP and #flagged over rows p >= t."""
    order = np.argsort(-p, kind="stable")
    ps = p[order]
    # A threshold can only sit between distinct scores: keep the last row of each tie.
    last_of_tie = np.r_[ps[1:] != ps[:-1], True]
    flagged = (np.flatnonzero(last_of_tie) + 1).astype(np.float64)
    cum_gain = np.cumsum(gain[order])[last_of_tie]
    tp = np.cumsum(y[order])[last_of_tie]
    return ps[last_of_tie], cum_gain, tp, flagged


def best_f1_threshold(*, y: np.ndarray, p: np.ndarray) -> float:
    """Threshold (predict churn when p >= threshold) maximising F1 on the given predictions."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    ps, _, tp, flagged = _sorted_cumulative(y, p, np.zeros_like(p))
    f1 = 2 * tp / (flagged + y.sum())
    return float(ps[int(np.argmax(f1))])


def expected_value_threshold(
    *,
    y: np.ndarray,
    p: np.ndarray,
    offer_cost: float | np.ndarray,
    customer_value: float | np.ndarray,
    save_rate: float,
) -> tuple[float, float]:
    """Threshold maximising the saving of targeting everyone with p >= threshold.

    saving = Σ_targeted (y_i · customer_value_i · save_rate - offer_cost_i)
           = customer_value · save_rate · TP - offer_cost · (TP + FP)   (scalar inputs).
    A churner who is offered the incentive stays with probability `save_rate`; every offer
    costs `offer_cost`. Returns (threshold, saving); threshold 1.0 means nobody is worth it.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    value = np.broadcast_to(np.asarray(customer_value, dtype=np.float64), y.shape)
    cost = np.broadcast_to(np.asarray(offer_cost, dtype=np.float64), y.shape)
    gain = y * value * save_rate - cost
    ps, cum, _, _ = _sorted_cumulative(y, p, gain)
    best = int(np.argmax(cum))
    if cum[best] <= 0:
        return 1.0, 0.0
    return float(ps[best]), float(cum[best])


def evaluate_predictions(
    *, y: np.ndarray, p: np.ndarray, threshold: float | np.ndarray
) -> dict[str, Any]:
    """Ranking, probability and decision metrics of predictions `p` for labels `y`.

    `threshold` is one cut for every row, or one per row (nested selection: each row cut at
    the threshold chosen without it); "threshold" in the result is then their median."""
    y = np.asarray(y, dtype=np.int64)
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    n, positives = len(y), int(y.sum())
    pred = p >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = positives - tp
    tn = n - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / positives if positives else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n_top = max(int(np.ceil(0.1 * n)), 1)
    top = np.argsort(-p, kind="stable")[:n_top]
    base_rate = positives / n if n else 0.0
    top_rate = float(y[top].mean())
    clipped = np.clip(p, 1e-15, 1 - 1e-15)
    log_loss = float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)))
    bins = np.minimum((p * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    counts = np.bincount(bins, minlength=CALIBRATION_BINS)
    sum_p = np.bincount(bins, weights=p, minlength=CALIBRATION_BINS)
    sum_y = np.bincount(bins, weights=y, minlength=CALIBRATION_BINS)
    curve = [
        {
            "bin_low": b / CALIBRATION_BINS,
            "bin_high": (b + 1) / CALIBRATION_BINS,
            "mean_predicted": float(sum_p[b] / counts[b]),
            "fraction_positive": float(sum_y[b] / counts[b]),
            "count": int(counts[b]),
        }
        for b in range(CALIBRATION_BINS)
        if counts[b]
    ]
    both = 0 < positives < n
    return {
        "n": n,
        "positive_rate": base_rate,
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": log_loss,
        "threshold": float(np.median(threshold)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "top_decile_lift": top_rate / base_rate if base_rate else float("nan"),
        "top_decile_capture": float(y[top].sum()) / positives if positives else float("nan"),
        "confusion_matrix": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "calibration_curve": curve,
    }
