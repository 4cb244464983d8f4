"""Risk tiers: probability bands, e.g. low < 0.3 ≤ medium < 0.5 ≤ high < 0.7 ≤ critical."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_TIER_NAMES: tuple[str, ...] = ("low", "medium", "high", "critical")
DEFAULT_TIER_EDGES: tuple[float, ...] = (0.3, 0.5, 0.7)


def assign_tiers(
    *,
    probabilities: np.ndarray | Sequence[float],
    edges: Sequence[float] = DEFAULT_TIER_EDGES,
    names: Sequence[str] = DEFAULT_TIER_NAMES,
) -> np.ndarray:
    """Tier name per probability; a probability equal to an edge belongs to the upper tier."""
    edges_arr = np.asarray(edges, dtype=np.float64)
    if len(names) != len(edges_arr) + 1:
        raise ValueError(
            f"{len(edges_arr)} edges need {len(edges_arr) + 1} names, got {len(names)}"
        )
    if np.any(np.diff(edges_arr) <= 0):
        raise ValueError("tier edges must be strictly increasing")
    p = np.asarray(probabilities, dtype=np.float64)
    if np.isnan(p).any():
        raise ValueError("probabilities contain NaN")
    return np.asarray(names, dtype=object)[np.searchsorted(edges_arr, p, side="right")]
