"""Fixtures for the pure uplift tests: the Hillstrom randomised e-mail test, if present."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

HILLSTROM_FILE = "Kevin_Hillstrom_MineThatData_E-MailAnalytics_DataMiningChallenge_2008.03.20.csv"
REPO_ROOT = Path(__file__).resolve().parents[3]


def hillstrom_path() -> Path | None:
    """HILLSTROM_CSV if set, else shared/data beside the repo, else the repo's demo/data."""
    candidates = [
        Path(os.environ["HILLSTROM_CSV"]) if os.environ.get("HILLSTROM_CSV") else None,
        REPO_ROOT.parent / "shared" / "data" / HILLSTROM_FILE,
        REPO_ROOT / "demo" / "data" / HILLSTROM_FILE,
    ]
    return next((path for path in candidates if path is not None and path.is_file()), None)


@pytest.fixture(scope="session")
def hillstrom() -> pd.DataFrame:
    path = hillstrom_path()
    if path is None:
        pytest.skip(
            f"{HILLSTROM_FILE} not found (set HILLSTROM_CSV or put it in ../shared/data/); "
            "see shared/data/SOURCES.md section 4"
        )
    return pd.read_csv(path)


@pytest.fixture(autouse=True, scope="session")
def _one_openmp_thread():
    # As in tests/scoring/ml: HistGradientBoosting's OpenMP threads spin-wait, so on a shared
    # 2-core runner a fit (the uplift learners' base="hgb") is 50-100× slower than on one thread.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield
