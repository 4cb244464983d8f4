"""Compare uplift methods on a validation half. Minimal version: replaced at merge by
upliftml's version (same signature; that one adds AUUC, uplift@k and bootstrap intervals)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
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
    reports: list[dict[str, Any]]  # per method: {"method", "qini": {action: float}, "mean_qini"}
    validation_key: str


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
    digest = hashlib.sha256(np.asarray(features.index.astype(str)).astype("U").tobytes())
    digest.update(valid.tobytes() + y.astype(np.int8).tobytes() + arms.astype("U").tobytes())
    reports: list[dict[str, Any]] = []
    for method in methods:
        fitted = fit_multi_action(
            method=method,  # type: ignore[arg-type]
            features=features[~valid],
            arm=arms[~valid],
            outcome=y[~valid],
        )
        scores = fitted.predict_uplift(features[valid])
        qini = {}
        for action in fitted.actions:
            rows = (arms[valid] == action) | (arms[valid] == CONTROL_ARM)
            qini[action] = qini_coefficient(
                y=y[valid][rows],
                treatment=(arms[valid][rows] == action).astype(np.int64),
                score=scores[action].to_numpy()[rows],
            )
        reports.append(
            {"method": method, "qini": qini, "mean_qini": float(np.mean(list(qini.values())))}
        )
    best = max(reports, key=lambda r: r["mean_qini"])["method"]
    model = fit_multi_action(method=best, features=features, arm=arms, outcome=y)  # type: ignore[arg-type]
    return MethodComparison(
        best=best, model=model, reports=reports, validation_key=digest.hexdigest()[:32]
    )
