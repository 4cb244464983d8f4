"""Risk tiers: by rank within a scoring run (critical = the top 5%, …) or by probability band.

A tier rule is either a *rank share* (a share of the run's scorable customers, counted from
the most at risk down) or a *probability band* (p ≥ its lower bound). Tiers are tried from the
most severe down and the least severe tier takes the rest, so every scorable customer gets
exactly one tier. The same rule is computed here with numpy (a frame of scores) and by
`scoring.services.tiers` in SQL (a stored run), so the two can never disagree:

- a customer's *position* is the number of customers strictly more at risk (RANK() - 1 in
  SQL), so tied probabilities always share a tier; a tied group is never split and goes to
  the tier its first member falls in;
- a rank tier holds the positions below the running total of the rank shares of itself and of
  every more severe rank tier, times the number of scorable customers; shares are counted in
  whole millionths (PPM) so the test is integer arithmetic in numpy and SQL alike (0.05 +
  0.10 in floats is 0.15000000000000002, which would let a 31st customer of 200 into "high").

The older `assign_tiers` (fixed bands given as edges) stays for the benchmarks and callers
that pass their own edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

DEFAULT_TIER_NAMES: tuple[str, ...] = ("low", "medium", "high", "critical")
DEFAULT_TIER_EDGES: tuple[float, ...] = (0.3, 0.5, 0.7)

RANK = "rank"
BAND = "band"
# A stored score without a probability: the model cannot score the customer honestly.
NOT_SCORABLE = "not_scorable"


@dataclass(frozen=True)
class TierRule:
    """One tier: `share` (0–1) for a rank tier, `min_probability` for a band tier."""

    name: str
    severity: int  # higher is more severe
    mode: str = RANK
    share: float | None = None
    min_probability: float = 0.0


# Issue 10: a tier should mean something whatever the base churn rate: the top 5% of a run are
# critical, the next 10% high, the next 20% medium, the rest low.
DEFAULT_TIER_RULES: tuple[TierRule, ...] = (
    TierRule("critical", 3, RANK, 0.05, 0.7),
    TierRule("high", 2, RANK, 0.10, 0.5),
    TierRule("medium", 1, RANK, 0.20, 0.3),
    TierRule("low", 0, RANK, None, 0.0),
)


@dataclass(frozen=True)
class TierCondition:
    """The test of one tier, in the order tried: `position·PPM < cumulative_ppm·n` (rank) or
    `p ≥ min_probability` (band)."""

    name: str
    mode: str
    cumulative_ppm: int  # rank tiers: the running total of rank shares, in millionths
    min_probability: float


PPM = 1_000_000


def by_severity(rules: Sequence[TierRule]) -> list[TierRule]:
    """Most severe first."""
    return sorted(rules, key=lambda r: -r.severity)


def validate_tier_rules(rules: Sequence[TierRule]) -> list[str]:
    """Problems with a set of tiers, in words (empty when they are usable)."""
    problems: list[str] = []
    ordered = by_severity(rules)
    if not ordered:
        return ["there must be at least one tier"]
    if len({r.severity for r in ordered}) != len(ordered):
        problems.append("two tiers have the same severity: give each its own")
    upper = ordered[:-1]  # the least severe tier takes the rest
    for rule in upper:
        if rule.mode == RANK and (rule.share is None or not 0 < rule.share <= 1):
            problems.append(f"tier '{rule.name}': a rank share must be between 0% and 100%")
        if rule.mode == BAND and not 0 <= rule.min_probability < 1:
            problems.append(f"tier '{rule.name}': a band starts between 0% and 100%")
    total = sum(r.share or 0.0 for r in upper if r.mode == RANK)
    if total > 1 + 1e-9:
        problems.append(f"the rank shares add up to {total:.1%}: they must add up to 100% or less")
    bands = [r for r in upper if r.mode == BAND]
    for higher, lower in pairwise(bands):
        if higher.min_probability <= lower.min_probability:
            problems.append(
                f"bands overlap: '{higher.name}' starts at {higher.min_probability:.1%}, not above "
                f"'{lower.name}' at {lower.min_probability:.1%}; a more severe band starts higher"
            )
    return problems


def tier_conditions(rules: Sequence[TierRule]) -> tuple[list[TierCondition], str]:
    """The tests tried in order (most severe first) and the name of the tier for the rest."""
    problems = validate_tier_rules(rules)
    if problems:
        raise ValueError("; ".join(problems))
    ordered = by_severity(rules)
    conditions: list[TierCondition] = []
    cumulative = 0
    for rule in ordered[:-1]:
        if rule.mode == RANK:
            cumulative += round((rule.share or 0.0) * PPM)
        conditions.append(TierCondition(rule.name, rule.mode, cumulative, rule.min_probability))
    return conditions, ordered[-1].name


def positions(probabilities: np.ndarray) -> np.ndarray:
    """Per probability, how many others are strictly higher (ties share a position)."""
    p = np.asarray(probabilities, dtype=np.float64)
    ascending = np.sort(p)
    return len(p) - np.searchsorted(ascending, p, side="right")


def assign_ranked_tiers(
    *, probabilities: np.ndarray | Sequence[float], rules: Sequence[TierRule] = DEFAULT_TIER_RULES
) -> np.ndarray:
    """Tier name per probability, ranked within these probabilities (see the module doc)."""
    codes, names = ranked_tier_codes(probabilities=probabilities, rules=rules)
    return np.asarray(names, dtype=object)[codes]


def ranked_tier_codes(
    *, probabilities: np.ndarray | Sequence[float], rules: Sequence[TierRule] = DEFAULT_TIER_RULES
) -> tuple[np.ndarray, list[str]]:
    """`assign_ranked_tiers` as numbers: each probability's position in the names returned
    (most severe first). A million names cost a re-tiering ~0.3 s to compare and count."""
    p = np.asarray(probabilities, dtype=np.float64)
    if np.isnan(p).any():
        raise ValueError("probabilities contain NaN")
    conditions, rest = tier_conditions(rules)
    ascending = np.sort(p) if any(c.mode == RANK for c in conditions) else p
    tests = [
        _ranked_into(p, ascending, c.cumulative_ppm) if c.mode == RANK else p >= c.min_probability
        for c in conditions
    ]
    names = [c.name for c in conditions]
    if not len(p):
        return np.zeros(0, dtype=np.int64), [*names, rest]
    codes = np.select(tests, list(range(len(names))), default=len(names))
    return np.asarray(codes, dtype=np.int64), [*names, rest]


def _ranked_into(p: np.ndarray, ascending: np.ndarray, cumulative_ppm: int) -> np.ndarray:
    """Whether each of `p` (`ascending`: the same, sorted) has a position (`positions`) with
    position * PPM < cumulative_ppm * n — without a position per value: the positions passing
    are those below k = ceil(cumulative_ppm * n / PPM), and a probability has one of them
    exactly when it is at least the k-th highest (fewer than k others are strictly higher;
    any lower one has those k above it). One sort instead of a search per value (1M random
    probabilities, the default tiers: 0.33 → 0.09 s); the same tiers
    (tests/scoring/ml/test_tiers.py checks against `positions`)."""
    n = len(p)
    k = -(-int(cumulative_ppm) * n // PPM)  # integer ceil, as the SQL rule counts
    if k <= 0:
        return np.zeros(n, dtype=bool)
    if k >= n:
        return np.ones(n, dtype=bool)
    return p >= ascending[n - k]


def assign_tiers(
    *,
    probabilities: np.ndarray | Sequence[float],
    edges: Sequence[float] = DEFAULT_TIER_EDGES,
    names: Sequence[str] = DEFAULT_TIER_NAMES,
) -> np.ndarray:
    """Tier name per probability by fixed bands; a probability on an edge is in the upper tier."""
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


def assign_tiers_against(
    *,
    probabilities: np.ndarray | Sequence[float],
    reference: np.ndarray,
    rules: Sequence[TierRule] = DEFAULT_TIER_RULES,
) -> np.ndarray:
    """Tier name per probability as if it were ranked among `reference` (a completed run's
    scorable probabilities, sorted ascending): the same rule as `assign_ranked_tiers`, for a
    customer rescored alone between runs (docs/realtime.md). An empty reference ranks nobody
    into a rank tier (bands still apply)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if np.isnan(p).any():
        raise ValueError("probabilities contain NaN")
    conditions, rest = tier_conditions(rules)
    ascending = np.asarray(reference, dtype=np.float64)
    n = len(ascending)
    position = (n - np.searchsorted(ascending, p, side="right")).astype(np.int64)
    tests = [
        (position * PPM < c.cumulative_ppm * n) if c.mode == RANK else p >= c.min_probability
        for c in conditions
    ]
    names = [c.name for c in conditions]
    return np.asarray(np.select(tests, names, default=rest) if len(p) else [], dtype=object)
