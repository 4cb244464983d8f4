"""What the tests and intervals of campaigns.uplift share: the two-sided critical value, the
check of alpha, and float arrays. Pure numpy/scipy."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

FloatArray = npt.NDArray[np.float64]
ArrayLikeFloat = npt.ArrayLike


def critical_z(alpha: float) -> float:
    """The standard normal quantile of a two-sided interval at level 1 - alpha."""
    return float(sps.norm.ppf(1.0 - alpha / 2.0))


def check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def as_float_array(values: ArrayLikeFloat) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def level_text(alpha: float) -> str:
    """1 - alpha as a percentage for method texts: 0.05 → "95%"."""
    return f"{100 * (1 - alpha):g}%"
