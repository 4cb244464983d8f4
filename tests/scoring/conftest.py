"""Synthetic customers with a churn signal, written through the real import services."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from customers.importers import import_file


@pytest.fixture
def artifact_dir(tmp_path: Path, settings) -> Path:
    settings.MODEL_ARTIFACT_DIR = tmp_path / "models"
    return settings.MODEL_ARTIFACT_DIR


def write_labelled_customers(path: Path, *, n: int = 600, seed: int = 0) -> Path:
    """Customers whose `Churn` depends on `signal` (strongly) and `plan` (a little)."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    plan = rng.choice(["basic", "plus", "pro"], size=n)
    logit = 2.5 * signal + np.where(plan == "basic", 0.5, -0.3) - 1.0
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))
    pd.DataFrame(
        {
            "id": [f"s{i:05d}" for i in range(n)],
            "signal": signal.round(4),
            "noise": rng.normal(size=n).round(4),
            "plan": plan,
            "Churn": np.where(churn, "Yes", "No"),
        }
    ).to_csv(path, index=False)
    return path


@pytest.fixture
def labelled_customers(tmp_path: Path, db: None) -> Path:
    path = write_labelled_customers(tmp_path / "customers.csv")
    import_file(kind="customers", path=path)
    return path
