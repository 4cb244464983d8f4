"""Additive reasons and the readable student through the whole house: a trained model stores
its groups and its student, a scoring run stores each explained customer's waterfall, and the
admin pages show both in words."""

from __future__ import annotations

from html import unescape
from pathlib import Path

import pytest
from django.test import Client

from scoring.ml.distill import Student
from scoring.ml.explain import waterfall_read
from scoring.models import ChurnModel, CustomerScore
from tests.scoring.conftest import train_and_score

pytestmark = pytest.mark.django_db


@pytest.fixture
def scored(labelled_customers: Path, artifact_dir: Path) -> ChurnModel:
    run = train_and_score(run_key="nightly-2024-06-01")
    return run.model


def test_a_run_stores_waterfalls_that_add_up_and_the_pages_show_them(
    scored: ChurnModel, admin_client: Client
) -> None:
    model = scored
    assert model.reference["groups"]["members"]
    student = Student.from_dict(model.reference["student"])
    assert student.leaves and student.rows["test"] > 0
    explained = CustomerScore.objects.exclude(attributions={})
    assert explained.count() > 20
    for score in explained:
        baseline, steps, rest, method = waterfall_read(score.attributions, score.reasons)
        assert method == "l"
        total = baseline + sum(v for _, v in steps) + rest
        assert total == pytest.approx(score.probability, abs=1e-6)
    # Customers below the reasons' floor have no waterfall, and say why.
    quiet = CustomerScore.objects.filter(attributions={}).first()
    assert quiet is not None
    page = admin_client.get(f"/admin/customers/customer/{quiet.customer_id}/change/")
    assert (
        "reasons are worked out for the customers in the higher risk tiers" in page.content.decode()
    )

    top = explained.order_by("-probability").first()
    assert top is not None
    page = unescape(
        admin_client.get(f"/admin/customers/customer/{top.customer_id}/change/").content.decode()
    )
    assert 'data-chart="score-waterfall"' in page
    assert f"this customer's is {top.probability:.1%}" in page
    for phrase, value in waterfall_read(top.attributions, top.reasons)[1]:
        assert phrase in page
        assert f"{abs(value) * 100:.1f} points: {phrase}" in page

    page = unescape(
        admin_client.get(f"/admin/scoring/churnmodel/{model.pk}/change/").content.decode()
    )
    assert "Readable student" in page
    for leaf in student.leaves:
        assert f"<td>{student.rule_text(leaf)}</td><td>{leaf.risk:.0%}</td>" in page
    assert "{&quot;" not in page
