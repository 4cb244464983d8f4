"""Compare uplift methods on a validation half. Minimal version: replaced at merge by
upliftml's version (same signature and report rows; that one adds AUUC, uplift at k, paired
differences, revenue models and the curves)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from campaigns.uplift.models import (
    CONTROL_ARM,
    MultiActionUplift,
    fit_multi_action,
    qini_coefficient,
)


@dataclass(frozen=True)
class MethodComparison:
    best: str
    model: MultiActionUplift  # the best method refitted on all rows
    reports: list[
        dict[str, Any]
    ]  # per (method | "random" | "risk", action): qini {value, low, high}
    validation_key: str  # sha256 of the sorted validation row ids
    mean_qini: dict[str, float] = field(default_factory=dict)


def _qini(y: Any, t: Any, score: Any, rng: np.random.Generator, n_boot: int) -> dict[str, float]:
    draws = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(y), len(y))
        try:
            draws.append(qini_coefficient(y=y[pick], treatment=t[pick], score=score[pick]))
        except ValueError:
            continue
    low, high = np.percentile(draws, [2.5, 97.5]) if draws else (np.nan, np.nan)
    value = qini_coefficient(y=y, treatment=t, score=score)
    return {"value": float(value), "low": float(low), "high": float(high)}


def compare_methods(
    *,
    features: pd.DataFrame,
    arm: npt.ArrayLike,
    outcome: npt.ArrayLike,
    revenue: npt.ArrayLike | None = None,
    risk: npt.ArrayLike | None = None,
    methods: Sequence[str] = ("t_learner", "class_transformation"),
    validation_share: float = 0.5,
    seed: int = 42,
    n_boot: int = 200,
) -> MethodComparison:
    arms, y = np.asarray(arm, dtype=object), np.asarray(outcome).astype(np.int64)
    rng = np.random.default_rng(seed)
    valid = np.zeros(len(arms), dtype=bool)
    for stratum in {(a, o) for a, o in zip(arms, y, strict=True)}:  # stratified by arm × outcome
        rows = np.flatnonzero((arms == stratum[0]) & (y == stratum[1]))
        valid[rng.permutation(rows)[: round(len(rows) * validation_share)]] = True
    key = hashlib.sha256("\n".join(sorted(str(i) for i in features.index[valid])).encode())
    scores = {
        method: fit_multi_action(
            method=method,  # type: ignore[arg-type]
            features=features[~valid],
            arm=arms[~valid],
            outcome=y[~valid],
        ).predict_uplift(features[valid])
        for method in methods
    }
    if risk is not None:
        scores["risk"] = pd.DataFrame({a: np.asarray(risk)[valid] for a in scores[methods[0]]})
    reports: list[dict[str, Any]] = []
    for action in scores[methods[0]].columns:
        rows = (arms[valid] == action) | (arms[valid] == CONTROL_ARM)
        t = (arms[valid][rows] == action).astype(np.int64)
        zero = {"value": 0.0, "low": 0.0, "high": 0.0}
        reports.append({"method": "random", "action": action, "outcome": "binary", "qini": zero})
        for name, frame in scores.items():
            qini = _qini(y[valid][rows], t, frame[action].to_numpy()[rows], rng, n_boot)
            row = {"method": name, "action": action, "outcome": "binary", "rows": int(rows.sum())}
            reports.append({**row, "qini": qini})
    mean = {
        m: float(np.mean([r["qini"]["value"] for r in reports if r["method"] == m]))
        for m in methods
    }
    best = max(methods, key=lambda m: mean[m])
    model = fit_multi_action(method=best, features=features, arm=arms, outcome=y)  # type: ignore[arg-type]
    return MethodComparison(best, model, reports, key.hexdigest(), mean)
