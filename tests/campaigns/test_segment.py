"""A rule of the model's readable student as a campaign segment: the scoring run stores each
customer's leaf, the rule condition selects exactly the customers the student puts in it, the
rule builder offers the rules in words (and says when one belongs to an older model), the
dispatch targets only them, and `churn_distill` (re)distils a model."""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.admin_rules import active_model_segments
from campaigns.models import Intervention, Offer, Rule
from campaigns.rules import (
    SEGMENT,
    Condition,
    ModelSegment,
    condition_label,
    rule_mask,
    rule_spec,
    segment_keys,
)
from campaigns.services.dispatch import campaign_dispatch, campaign_rules_audience
from campaigns.services.plan import campaign_plan
from customers.importers import import_file
from customers.models import Customer
from customers.selectors import customers_frame_for_ids, events_frame_for_ids, orders_frame_for_ids
from scoring.ml.distill import Student
from scoring.ml.features import FeatureSpec, build_features
from scoring.models import CustomerScore, ScoringRun
from scoring.services.runs import parse_as_of, scoring_run_execute
from tests.campaigns.conftest import make_campaign, make_offer
from tests.scoring.conftest import (  # noqa: F401 (fixtures)
    artifact_dir,
    train_and_score,
    write_labelled_customers,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelled_customers(tmp_path: Path) -> Path:
    """300 labelled customers (tests.scoring.conftest's data, fewer of them: a faster test)."""
    path = write_labelled_customers(tmp_path / "customers.csv", n=300)
    import_file(kind="customers", path=path)
    return path


@pytest.fixture
def scored(labelled_customers: Path, artifact_dir: Path) -> ScoringRun:  # noqa: F811
    run = train_and_score(run_key="nightly-2024-06-01")
    return run


def distill_leaves(run: ScoringRun) -> tuple[Student, pd.Series]:
    """Each customer's leaf by the student's own `leaf_of`, on the features the run scored,
    with categories as text as `scoring.ml.distill.distill` reads them."""
    model = run.model
    student = Student.from_dict(model.reference["student"])
    features = build_features(
        orders=orders_frame_for_ids(),
        events=events_frame_for_ids(),
        customers=customers_frame_for_ids(),
        as_of=pd.Timestamp(run.as_of),
    )
    for column in FeatureSpec.from_dict(model.feature_spec).categorical:
        if column in features:
            features[column] = features[column].map(lambda v: v if v is None or v != v else str(v))
    return student, pd.Series(student.leaf_of(features), index=features.index)


def segment_of(leaf: int) -> ModelSegment:
    return next(s for s in active_model_segments()[1] if s.leaf == leaf)


def test_the_segment_selects_exactly_the_students_leaf_and_the_dispatch_targets_it(
    scored: ScoringRun,
) -> None:
    student, expected = distill_leaves(scored)
    rows = CustomerScore.objects.filter(run=scored).values_list("customer_id", "student_leaf")
    stored = dict(rows)
    assert {int(k): v for k, v in stored.items()} == expected.to_dict()  # the scores' column
    on_customer = dict(Customer.objects.values_list("pk", "score_student_leaf"))
    assert on_customer == expected.to_dict()  # copied onto the customer like the probability
    populated = expected.value_counts()
    assert len(populated) >= 2  # the test means something: customers in several leaves
    rules = [
        Rule(name=f"leaf {leaf}", channel="coupon", segment=segment_of(leaf).to_dict())
        for leaf in populated.index
    ]
    campaign = make_campaign(control_percentage=0, rules=[])
    counts = campaign_rules_audience(campaign=campaign, rules=rules, now=timezone.now())
    for leaf, audience in zip(populated.index, counts, strict=True):
        assert audience.matching == populated[leaf]
        assert audience.steps[0][0] == segment_of(leaf).label() + (
            f" — a rule of model {scored.model.version}"
        )
    # Every customer is in exactly one leaf: the rules together take everyone once.
    assert sum(a.taken for a in counts) == len(expected)
    plan = campaign_plan(
        campaign=campaign, now=timezone.now(), cycle_start=timezone.now(), rules=rules[:1]
    )
    first = populated.index[0]
    assert set(plan.decisions["customer_id"]) == set(expected.index[expected.eq(first)])
    assert {leaf.id for leaf in student.leaves} >= set(populated.index)

    # A dispatch with the riskiest populated segment targets only its customers.
    segment = next(s for s in active_model_segments()[1] if (expected == s.leaf).any())
    dispatched = make_campaign(
        name="Dispatched",
        control_percentage=20,
        rules=[
            {
                "name": "riskiest rule",
                "channel": "coupon",
                "offer": make_offer(),
                "segment": segment.to_dict(),
            }
        ],
    )
    summary = campaign_dispatch(campaign=dispatched, now=timezone.now())
    rows = Intervention.objects.filter(campaign=dispatched).values_list("customer_id", flat=True)
    targeted = set(rows)
    assert targeted == set(expected.index[expected.eq(segment.leaf)])
    assert 0 < len(targeted) < len(expected)
    assert summary is not None


def segment_offer() -> Offer:
    return Offer.objects.filter(name="Segment offer").first() or make_offer(name="Segment offer")


def form_data(segment: str, **overrides: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Segment campaign",
        "status": "draft",
        "cadence_minutes": "1440",
        "control_percentage": "10",
        "salt": "segment-salt",
        "attribution_window_days": "30",
        "cooldown_days": "14",
        "priority": "100",
        "mode": "scheduled",
        "reentry_days": "30",
        "targeting": "rules",
        "exploration_percentage": "5",
        "rules-TOTAL_FORMS": "1",
        "rules-INITIAL_FORMS": "0",
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
        "rules-0-position": "1",
        "rules-0-name": "Riskiest student rule",
        "rules-0-segment": segment,
        "rules-0-attribute_conditions_rows": "0",
        "rules-0-channel": "coupon",
        "rules-0-offer": str(segment_offer().pk),
    }
    data.update(overrides)
    return data


@pytest.fixture
def boss() -> Client:
    User.objects.create_superuser("boss", password="pw-segment-1")
    client = Client()
    client.force_login(User.objects.get(username="boss"))
    return client


def test_the_rule_builder_saves_the_segment_and_shows_it_in_words(
    scored: ScoringRun, boss: Client
) -> None:
    version, segments = active_model_segments()
    assert version == scored.model.version and segments
    assert [s.risk for s in segments] == sorted((s.risk for s in segments), reverse=True)
    add = boss.get(reverse("admin:campaigns_campaign_add")).content.decode()
    assert 'name="rules-0-segment"' in add
    positions = [add.index(f'value="{s.key}">') for s in segments]
    assert positions == sorted(positions)  # riskiest first
    first = segments[0]
    assert first.label() in unescape_html(add)
    response = boss.post(reverse("admin:campaigns_campaign_add"), form_data(first.key))
    assert response.status_code == 302, response.content.decode()[:3000]
    rule = Rule.objects.get(campaign__name="Segment campaign")
    assert rule.segment == first.to_dict()
    change_url = reverse("admin:campaigns_campaign_change", args=[rule.campaign_id])
    change = unescape_html(boss.get(change_url).content.decode())
    assert f'<option value="{first.key}" selected>{first.label()}</option>' in change
    # The live count of the saved form.
    answer = boss.post(reverse("admin:campaigns_campaign_audience"), form_data(first.key)).json()
    _student, expected = distill_leaves(scored)
    assert answer["rules"]["0"]["matching"] == int((expected == first.leaf).sum())
    assert answer["rules"]["0"]["segment_warning"] == ""
    # A typo'd segment is a form error naming it.
    bad = boss.post(reverse("admin:campaigns_campaign_add"), form_data("m-nope#3", name="Other"))
    assert bad.status_code == 200 and "m-nope#3 is not one of the available choices" in (
        unescape_html(bad.content.decode())
    )

    # A segment of an older model: the builder says so instead of silently matching nobody.
    segment = active_model_segments()[1][0]
    old = ModelSegment(
        model_version="m-older", leaf=segment.leaf, text=segment.text, risk=0.5, customers=9
    )
    campaign = make_campaign(
        name="Older", rules=[{"name": "old rule", "channel": "coupon", "segment": old.to_dict()}]
    )
    change_url = reverse("admin:campaigns_campaign_change", args=[campaign.pk])
    page = unescape_html(boss.get(change_url).content.decode())
    warning = f"This segment is a rule of model m-older, but model {scored.model.version} is active"
    assert warning in page
    assert f'<option value="{old.key}" selected>{old.label()} — model m-older</option>' in page
    rule = campaign.rules.get()
    answer = boss.post(
        reverse("admin:campaigns_campaign_audience"),
        form_data(
            old.key,
            **{
                "rules-INITIAL_FORMS": "1",
                "rules-0-id": str(rule.pk),
                "rules-0-campaign": str(campaign.pk),
                "campaign_id": str(campaign.pk),
            },
        ),
    ).json()
    assert answer["errors"] == {}, answer
    assert answer["rules"]["0"]["matching"] == 0
    assert answer["rules"]["0"]["segment_warning"].startswith(warning)
    # The active model distilled again, the chosen leaf reading differently: said too.
    moved = ModelSegment(
        model_version=scored.model.version, leaf=segment.leaf, text="tenure < 1", risk=0.5
    )
    Rule.objects.filter(pk=rule.pk).update(segment=moved.to_dict())
    page = unescape_html(boss.get(change_url).content.decode())
    assert (
        f"Model {scored.model.version} was distilled again since this segment was chosen: "
        f"leaf {segment.leaf} is now “{segment.text}”. Choose the rule again."
    ) in page


def test_churn_distill_redistils_a_model_without_a_student(scored: ScoringRun) -> None:
    model = scored.model
    before = model.reference["student"]
    model.reference = {k: v for k, v in model.reference.items() if k != "student"}
    model.save()
    assert active_model_segments() == (model.version, [])
    # Scored by a model without a student, customers have no leaf (and no segment matches).
    again = scoring_run_execute(as_of=parse_as_of("2024-06-01"), run_key="again")
    assert again is not None
    leaves = list(CustomerScore.objects.filter(run=again).values_list("student_leaf", flat=True))
    assert leaves and all(v is None for v in leaves)
    assert not Customer.objects.filter(score_student_leaf__isnull=False).exists()
    out = StringIO()
    call_command("churn_distill", "--version", model.version, stdout=out)
    model.refresh_from_db()
    student = Student.from_dict(model.reference["student"])
    assert [leaf.to_dict() for leaf in student.leaves] == before["leaves"]  # same rows, same tree
    text = out.getvalue()
    assert f"model {model.version}: {len(student.leaves)} rules" in text
    for leaf in student.leaves:
        assert student.rule_text(leaf) in text
    with pytest.raises(CommandError, match="no churn model 'm-nope'"):
        call_command("churn_distill", "--version", "m-nope")


def unescape_html(text: str) -> str:
    from html import unescape

    return unescape(text)


def test_a_segment_condition_reads_the_model_and_leaf_together_and_is_said_in_words() -> None:
    segment = ModelSegment(
        model_version="m2",
        leaf=5,
        text="tenure < 6 and Contract is Month-to-month",
        risk=0.62,
        customers=840,
    )
    rule = Rule(segment=segment.to_dict(), tiers=["critical"])
    spec = rule_spec(rule)
    assert spec.conditions[0] == Condition(SEGMENT, "segment_is", segment)
    frame = pd.DataFrame(
        {
            "model_version": ["m2", "m2", "m1", "m2", ""],
            "leaf": pd.array([5, 6, 5, None, None], dtype="Int16"),
            "tier": ["critical"] * 5,
        }
    )
    frame[SEGMENT] = segment_keys(frame["model_version"], frame["leaf"])
    assert frame[SEGMENT].tolist() == ["m2#5", "m2#6", "m1#5", "", ""]
    assert rule_mask(frame, spec).tolist() == [True, False, False, False, False]
    assert condition_label(spec.conditions[0]) == (
        "tenure < 6 and Contract is Month-to-month (risk 62%, 840 customers) — a rule of model m2"
    )
    assert ModelSegment.from_dict({}) is None
    with pytest.raises(ValueError, match="a segment needs model_version and leaf"):
        ModelSegment.from_dict({"leaf": 3})
