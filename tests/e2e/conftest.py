"""Browser tests: the program-wide holdout is off unless a test sets it (arms count exactly),
and the default risk tiers exist even after an earlier transactional test flushed them."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_global_control(settings: Any) -> None:
    settings.GLOBAL_CONTROL_PERCENT = 0


# The tier table's rows as the migrations leave them (0002 then 0006): a transactional test
# before this one flushes every table, migration data included.
DEFAULT_TIER_ROWS = [
    ("critical", 3, "rank", 0.05, 0.7, "#d32f2f"),
    ("high", 2, "rank", 0.10, 0.5, "#ff7043"),
    ("medium", 1, "rank", 0.20, 0.3, "#ffc107"),
    ("low", 0, "rank", None, 0.0, "#4caf50"),
]


@pytest.fixture(autouse=True)
def _default_risk_tiers(transactional_db: None) -> None:
    from scoring.models import RiskTier

    if not RiskTier.objects.exists():
        RiskTier.objects.bulk_create(
            RiskTier(name=n, severity=s, mode=m, share=sh, min_probability=p, color=c)
            for n, s, m, sh, p, c in DEFAULT_TIER_ROWS
        )
