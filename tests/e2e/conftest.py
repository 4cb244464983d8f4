"""Browser tests count arms exactly: the program-wide holdout is off unless a test sets it."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_global_control(settings: Any) -> None:
    settings.GLOBAL_CONTROL_PERCENT = 0
