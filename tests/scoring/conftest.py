"""Synthetic customers with a churn signal, written through the real import services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def train_and_score(*, run_key: str = "nightly") -> Any:
    """Train the quick LR model on the labelled customers (the `labelled_customers` and
    `artifact_dir` fixtures) and score everyone as of 2024-06-01: the finished ScoringRun."""
    from scoring.services.datasets import training_data_from_database
    from scoring.services.runs import parse_as_of, scoring_run_execute
    from scoring.services.training import churn_model_train

    data = training_data_from_database(label_attribute="Churn")
    churn_model_train(data=data, candidates=["lr_balanced"], n_splits=3)
    run = scoring_run_execute(as_of=parse_as_of("2024-06-01"), run_key=run_key)
    assert run is not None
    return run
