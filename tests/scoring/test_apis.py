"""The score API: the latest score of one customer, for API clients only."""

from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from scoring.models import ChurnModel
from scoring.services.datasets import training_data_from_database
from scoring.services.runs import parse_as_of, scoring_run_execute
from scoring.services.training import churn_model_train

pytestmark = pytest.mark.django_db


def test_score_api_returns_the_latest_score(
    labelled_customers: Path, artifact_dir: Path, api: APIClient
) -> None:
    data = training_data_from_database(label_attribute="Churn")
    churn_model_train(data=data, candidates=["lr_balanced"], n_splits=3)
    assert api.get("/api/v1/customers/s00001/score").status_code == 404  # not scored yet
    scoring_run_execute(as_of=parse_as_of("2024-06-01"))
    body = api.get("/api/v1/customers/s00001/score").json()
    assert set(body) == {
        "customer",
        "probability",
        "tier",
        "scorable",
        "not_scorable_reason",
        "reasons",
        "model_version",
        "scored_at",
        "as_of",
        "run",
    }
    assert (
        body["scorable"]
        and 0 <= body["probability"] <= 1
        and body["model_version"] == ChurnModel.objects.get().version
    )
    assert APIClient().get("/api/v1/customers/s00001/score").status_code == 401
