"""Segments of a behaviour-label model: customers it cannot score have no leaf (a segment
never takes them), the others each have one; churn_distill rebuilds the same student from the
model's recorded cutoff and horizon."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

from customers.models import Customer
from scoring.models import CustomerScore
from scoring.selectors import churn_model_active
from scoring.services.datasets import training_data_from_database
from scoring.services.runs import parse_as_of, scoring_run_execute
from scoring.services.training import churn_model_train
from tests.scoring.conftest import artifact_dir  # noqa: F401 (fixture)
from tests.scoring.services.test_not_scorable import shoppers_and_strangers

pytestmark = pytest.mark.django_db


def test_not_scorable_customers_have_no_leaf_and_churn_distill_rebuilds_the_student(
    artifact_dir: Path,  # noqa: F811
) -> None:
    shoppers_and_strangers()
    data = training_data_from_database(as_of=parse_as_of("2024-07-01"), horizon_days=90)
    churn_model_train(data=data, candidates=["lr_balanced"], n_splits=3)
    run = scoring_run_execute(as_of=parse_as_of("2024-10-01"), run_key="nightly")
    assert run is not None
    not_scorable = CustomerScore.objects.filter(run=run, scorable=False)
    assert not_scorable.count() == 60
    assert not not_scorable.filter(student_leaf__isnull=False).exists()
    scorable = CustomerScore.objects.filter(run=run, scorable=True)
    assert not scorable.filter(student_leaf__isnull=True).exists()
    strangers = Customer.objects.filter(external_id__startswith="x")
    assert set(strangers.values_list("score_student_leaf", flat=True)) == {None}
    model = churn_model_active()
    assert model is not None
    before = model.reference["student"]["leaves"]
    out = StringIO()
    call_command("churn_distill", stdout=out)  # the active model by default
    model.refresh_from_db()
    assert model.reference["student"]["leaves"] == before
    assert f"model {model.version}: {len(before)} rules" in out.getvalue()
