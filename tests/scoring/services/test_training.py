"""The model registry against the database: train, champion/challenger, rollback, artifacts."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import CommandError, call_command

from scoring.models import ChurnModel, CustomerScore, ModelStatus, ScoringRun
from scoring.services.datasets import training_data_from_database
from scoring.services.training import (
    TrainingOutcome,
    churn_model_activate,
    churn_model_rollback,
    churn_model_train,
)
from tests.conftest import shared_file

pytestmark = pytest.mark.django_db

FAST = ["lr_balanced"]


def train(**kwargs: object) -> TrainingOutcome:
    data = training_data_from_database(label_attribute="Churn", **kwargs)  # type: ignore[arg-type]
    return churn_model_train(data=data, candidates=FAST, n_splits=3)


def test_the_label_attribute_is_never_a_feature(
    labelled_customers: Path, artifact_dir: Path
) -> None:
    data = training_data_from_database(label_attribute="Churn")
    assert not [c for c in data.X.columns if "churn" in c.lower()]
    assert {"attr_signal", "attr_plan"} <= set(data.X.columns)
    assert data.validation == "stratified" and data.X_valid is None


def test_first_model_becomes_active_and_is_recorded_in_full(
    labelled_customers: Path, artifact_dir: Path
) -> None:
    outcome = train()
    model = ChurnModel.objects.get()
    assert outcome.activated and model.status == ModelStatus.ACTIVE
    assert model.metrics["roc_auc"] > 0.8  # the signal is strong
    assert model.label_definition == {"kind": "attribute", "attribute": "Churn"}
    assert model.library_versions["scikit-learn"]
    assert len(model.artifact_sha256) == 64 and Path(model.artifact_path).exists()
    assert model.metrics["pr_curve"] and model.metrics["calibration_curve"]
    assert model.training_rows == 600 and 0 < model.positive_rate < 1
    # Scoring reuses the training cutoff's BG/NBD parameters (chunk-independent features).
    assert {"r", "alpha", "a", "b"} <= set(model.reference["btyd_params"])


def test_a_worse_challenger_does_not_replace_the_active_model(
    labelled_customers: Path, artifact_dir: Path
) -> None:
    champion = train().model
    challenger = train(drop=["signal"])  # blind to the strongest feature
    champion.refresh_from_db()
    assert not challenger.activated
    assert challenger.model.status == ModelStatus.CANDIDATE
    assert champion.status == ModelStatus.ACTIVE
    comparison = challenger.model.holdout_metrics
    assert comparison["champion_pr_auc"] > comparison["challenger_pr_auc"]
    assert comparison["basis"] == "out-of-fold on the same validation data"
    better = train()  # as good as the champion on the same rows: it takes over
    assert better.activated and better.model.status == ModelStatus.ACTIVE
    champion.refresh_from_db()
    assert champion.status == ModelStatus.RETIRED
    assert churn_model_rollback() == champion
    assert ChurnModel.objects.filter(status=ModelStatus.ACTIVE).get() == champion


def test_rollback_without_an_earlier_model_is_refused(
    labelled_customers: Path, artifact_dir: Path
) -> None:
    from scoring.errors import TrainingError

    train()
    with pytest.raises(TrainingError, match="no previously active model"):
        churn_model_rollback()


def test_rollback_reaches_a_model_whose_label_definition_has_no_kind(
    labelled_customers: Path, artifact_dir: Path
) -> None:
    first = train().model
    ChurnModel.objects.filter(pk=first.pk).update(label_definition={"attribute": "Churn"})
    second = train().model  # as good on the same rows: it takes over
    assert ChurnModel.objects.get(pk=second.pk).status == ModelStatus.ACTIVE
    assert churn_model_rollback().pk == first.pk


def test_a_tampered_artifact_is_refused_with_a_clear_error(
    labelled_customers: Path, artifact_dir: Path
) -> None:
    model = train().model
    path = Path(model.artifact_path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CommandError, match=r"SHA-256 .* expected .*refusing to load"):
        call_command("churn_score", "--no-progress", stdout=StringIO())
    assert not CustomerScore.objects.exists()


def test_churn_train_and_score_straight_from_a_file(tmp_path: Path, artifact_dir: Path) -> None:
    telco = shared_file("WA_Fn-UseC_-Telco-Customer-Churn.csv")
    out = StringIO()
    call_command(
        "churn_train",
        "--csv",
        str(telco),
        "--label",
        "Churn",
        "--id",
        "customerID",
        "--candidates",
        "lr_balanced",
        "--json",
        stdout=out,
    )
    report = json.loads(out.getvalue())
    selected = report["selected"]
    assert selected["name"] == "lr_balanced" and selected["version"]
    assert 0.82 < selected["roc_auc"] < 0.87  # out-of-fold; published baselines are ≈ 0.845
    assert {"pr_auc", "brier", "f1"} <= set(selected)
    assert [c["name"] for c in report["candidates"]] == ["lr_balanced"]
    assert report["champion_challenger"]["decision"] == "registered only (trained from a file)"
    model = ChurnModel.objects.get(version=selected["version"])
    assert model.status == ModelStatus.CANDIDATE  # a file-trained model never scores the database
    from scoring.errors import TrainingError

    with pytest.raises(TrainingError, match="trained from a file"):
        churn_model_activate(model=model)
    rows = pd.read_csv(telco).head(50).drop(columns=["Churn"])
    rows.loc[1, "customerID"] = '=HYPERLINK("http://x")'  # must not run as a formula
    rows.to_csv(tmp_path / "new.csv", index=False)
    call_command(
        "churn_score",
        "--csv",
        str(tmp_path / "new.csv"),
        "--out",
        str(tmp_path / "scores.csv"),
        stdout=StringIO(),
    )
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert list(scores.columns) == ["id", "probability", "tier", "reasons"]
    assert len(scores) == 50 and scores["id"].iloc[0] == "7590-VHVEG"
    assert scores["id"].iloc[1] == '\'=HYPERLINK("http://x")'
    assert scores["probability"].between(0, 1).all()


def test_training_errors_are_clear(labelled_customers: Path, artifact_dir: Path) -> None:
    with pytest.raises(CommandError, match="no customer has the attribute 'Exited'"):
        call_command("churn_train", "--label-attribute", "Exited", stdout=StringIO())
    with pytest.raises(CommandError, match="give either --label-attribute"):
        call_command("churn_train", stdout=StringIO())
    with pytest.raises(CommandError, match="there is no active churn model"):
        call_command("churn_score", "--no-progress", stdout=StringIO())
    assert not ScoringRun.objects.exists()
