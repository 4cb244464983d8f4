"""Holdout sizing: the smallest uplift a campaign can detect, and the holdout a target needs.

Two-sided test of a difference in proportions, normal approximation, with the baseline
(control) rate's variance used for both arms:

    SE  = sqrt(p (1 - p) (1/n_t + 1/n_c)),   n_c = N * c,  n_t = N * (1 - c)
    MDE = (z_{1 - alpha/2} + z_{power}) * SE

With alpha = 0.05 and 80% power the multiplier is 1.95996 + 0.84162 = 2.80159 (the textbook
"MDE = 2.8 standard errors", Bloom 1995). Example: N = 10,000, c = 10%, p = 0.10 gives
SE = sqrt(0.09 * (1/9000 + 1/1000)) = 0.0100 and MDE = 0.0280 (28% relative).

The inverse solves the same equation for c. Writing K = N * delta^2 / ((z_a + z_b)^2 p (1 - p)),
detection needs 1 / (c (1 - c)) <= K; c (1 - c) is at most 1/4 (a 50/50 split), so the target
is impossible when K < 4, and otherwise the smallest holdout is c = (1 - sqrt(1 - 4/K)) / 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as sps


@dataclass(frozen=True)
class DetectableEffect:
    audience_size: int
    control_percent: float
    treated_n: float
    control_n: float
    baseline_rate: float
    alpha: float
    power: float
    standard_error: float
    minimum_detectable_effect: float
    minimum_detectable_relative_lift: float


@dataclass(frozen=True)
class RequiredHoldout:
    audience_size: int
    baseline_rate: float
    target_effect: float
    alpha: float
    power: float
    control_percent: float
    control_n: int
    treated_n: int


def _multiplier(alpha: float, power: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")
    return float(sps.norm.ppf(1.0 - alpha / 2.0) + sps.norm.ppf(power))


def _check_common(audience_size: int, baseline_rate: float) -> None:
    if audience_size <= 0:
        raise ValueError(f"audience_size must be positive, got {audience_size}")
    if not 0.0 < baseline_rate < 1.0:
        raise ValueError(f"baseline_rate must be in (0, 1), got {baseline_rate}")


def minimum_detectable_effect(
    *,
    audience_size: int,
    baseline_rate: float,
    control_percent: float,
    alpha: float = 0.05,
    power: float = 0.80,
) -> DetectableEffect:
    """Smallest absolute rate difference detectable with `power` at two-sided `alpha`.

    control_percent is a percentage (10 means a 10% holdout), as on a Campaign.
    """
    _check_common(audience_size, baseline_rate)
    if not 0.0 < control_percent < 100.0:
        raise ValueError(f"control_percent must be in (0, 100), got {control_percent}")
    fraction = control_percent / 100.0
    control_n = audience_size * fraction
    treated_n = audience_size - control_n
    se = math.sqrt(baseline_rate * (1.0 - baseline_rate) * (1.0 / treated_n + 1.0 / control_n))
    mde = _multiplier(alpha, power) * se
    return DetectableEffect(
        audience_size=audience_size,
        control_percent=control_percent,
        treated_n=treated_n,
        control_n=control_n,
        baseline_rate=baseline_rate,
        alpha=alpha,
        power=power,
        standard_error=se,
        minimum_detectable_effect=mde,
        minimum_detectable_relative_lift=mde / baseline_rate,
    )


def control_percent_for_effect(
    *,
    audience_size: int,
    baseline_rate: float,
    target_effect: float,
    alpha: float = 0.05,
    power: float = 0.80,
) -> RequiredHoldout | None:
    """Smallest holdout percentage that detects `target_effect` (absolute rate difference),
    or None if even a 50/50 split of this audience cannot."""
    _check_common(audience_size, baseline_rate)
    if target_effect <= 0:
        raise ValueError(f"target_effect must be positive, got {target_effect}")
    k = (
        audience_size
        * target_effect**2
        / (_multiplier(alpha, power) ** 2 * baseline_rate * (1.0 - baseline_rate))
    )
    if k < 4.0:
        return None
    fraction = (1.0 - math.sqrt(1.0 - 4.0 / k)) / 2.0
    control_n = math.ceil(audience_size * fraction)
    return RequiredHoldout(
        audience_size=audience_size,
        baseline_rate=baseline_rate,
        target_effect=target_effect,
        alpha=alpha,
        power=power,
        control_percent=100.0 * fraction,
        control_n=control_n,
        treated_n=audience_size - control_n,
    )
