"""The demo's two cycles on a slice of the shop (every 4th customer): cycle 1 by rules on the
demo's clock (the as-of date, 09:00 UTC), its simulated orders dated after the shop's history;
then, the day after its attribution windows closed, cycle 2 — an uplift model trained on
cycle 1, the campaign switched to uplift-policy targeting with its budget, a rescore as of the
new date that reads the simulated orders, dispatch, simulation — and both cycles' uplift
printed beside the truth. A rerun changes nothing. (Before the policy dispatch is merged,
dispatch chooses cycle 2 by rules; after, by the policy: both pass.)"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from campaigns.models import Campaign, CampaignCycle, Intervention, UpliftModel
from customers.models import Order
from demo.cycle import DemoError, demo_dispatch_moment
from retention.cycle import STAGES, CycleOptions, run_cycle
from retention.sources import sources_load
from scoring.models import ScoringRun
from tests.campaigns.conftest import email_rule  # noqa: F401  (the fixture)
from tests.demo.test_shop import REPO, SHOP_FILE, shop_sample

pytestmark = pytest.mark.django_db


def shop_slice(tmp_path: Path) -> Path:
    """demo/sources.json on every 4th customer of the shop (cycle 1 then holds out enough
    customers for an uplift model), one churn candidate."""
    spec = json.loads((REPO / "demo" / "sources.json").read_text())
    spec["imports"][0]["path"] = str(shop_sample(tmp_path, every=4))
    spec["campaigns"] = str(REPO / "demo" / "campaigns.json")
    spec["scoring"]["train"]["candidates"] = "lr_balanced"
    path = tmp_path / "sources.json"
    path.write_text(json.dumps(spec))
    return path


def test_the_second_cycle_stage_is_last() -> None:
    assert [name for name, _ in STAGES][-2:] == ["uplift", "second_cycle"]


def test_the_demo_clock_dispatches_on_the_as_of_date() -> None:
    as_of = datetime(2011, 12, 10, tzinfo=UTC)
    moment = demo_dispatch_moment(config={"dispatch_time": "09:00"}, as_of=as_of)
    assert moment == datetime(2011, 12, 10, 9, tzinfo=UTC)
    assert demo_dispatch_moment(config={}, as_of=as_of) is None  # now, as in production
    with pytest.raises(DemoError, match="dispatch_time is '9 am'; expected HH:MM"):
        demo_dispatch_moment(config={"dispatch_time": "9 am"}, as_of=as_of)


@pytest.mark.slow
def test_two_cycles_rules_then_uplift_policy(settings: Any, tmp_path: Path) -> None:
    assert SHOP_FILE.exists()
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.SMS_BACKEND = "file"
    settings.SMS_FILE_PATH = str(tmp_path / "sms.jsonl")
    # A quarter of the shop: cycle 1 holds out a few dozen customers.
    settings.UPLIFT_MIN_ROWS_PER_ARM = 5
    settings.UPLIFT_BOOTSTRAP_RESAMPLES = 20
    options = CycleOptions(sources=sources_load(shop_slice(tmp_path)))
    printed: list[str] = []
    results = run_cycle(options, on_stage=lambda _name, result: printed.extend(result.lines))

    campaign = Campaign.objects.get(name="Win-back (demo)")
    cycles = list(campaign.cycles.order_by("started_at"))
    first = cycles[0]
    assert first.started_at == datetime(2011, 12, 10, 9, tzinfo=UTC)
    assert first.targeting == "rules"
    window = timedelta(days=campaign.attribution_window_days)
    second_start = first.started_at + window + timedelta(days=1)
    # Cycle 1's simulated orders follow the shop's history and precede cycle 2's rescore,
    # which counts them.
    simulated = Order.objects.filter(external_id__startswith="sim-")
    cycle_one = simulated.filter(placed_at__lt=second_start)
    assert cycle_one.exists()
    assert min(o.placed_at for o in cycle_one) > datetime(2011, 12, 10, tzinfo=UTC)
    runs = list(ScoringRun.objects.order_by("as_of").values_list("as_of", flat=True))
    assert [r.date().isoformat() for r in runs] == ["2011-12-10", "2012-01-10"]
    # The campaign now targets by uplift policy, with the sources file's budget; the model was
    # trained on cycle 1's finished windows only.
    assert campaign.targeting == "uplift_policy"
    assert campaign.policy_budget == Decimal("1200")
    text = "\n".join(printed)
    print(text)  # shown by pytest when an assertion below fails
    assert "Cycle 1 (rules, 2011-12-10, " in text
    data = results["second_cycle"]
    # On a quarter of the shop the outcome depends on the draw (the arms are hashes of the
    # database's customer ids): a model, or a message saying why there is none; then a policy
    # cycle, or nobody worth contacting, or — without a champion — a cycle by rules.
    model = UpliftModel.objects.filter(campaign=campaign).first()
    if model is None:
        assert "Uplift model: " in text and data["model"] is None
    else:
        assert model.status == "champion"
        assert 0 < model.training_rows <= first.interventions.count()
    if len(cycles) == 1:
        assert model is not None
        assert "The uplift policy found no customer worth contacting" in text
        assert [c["cycle_key"] for c in data["cycles"]] == [first.cycle_key]
    else:
        second = cycles[1]
        assert second.started_at == second_start
        assert second.targeting == ("rules" if model is None else "uplift_policy")
        if model is None:
            assert "uplift policy without a champion uplift model" in text
        else:
            assert Intervention.objects.filter(cycle=second, selection="policy").exists()
            assert "uplift policy − rules: " in text and "the policy expected " in text
        # Both cycles simulated with the per-action truth, and printed beside it.
        for cycle in (first, second):
            assert cycle.summary["simulation"]["truth"] == "actions"
        assert [c["cycle_key"] for c in data["cycles"]] == [first.cycle_key, second.cycle_key]
        assert " · true " in text.split("Cycle 2 (")[1]
    assert all(c["true_effect"] is not None and c["ci"] is not None for c in data["cycles"])

    counts = (Order.objects.count(), Intervention.objects.count(), UpliftModel.objects.count())
    run_cycle(options, only=["dispatch", "simulate", "second_cycle"])  # a rerun: all done
    assert (
        Order.objects.count(),
        Intervention.objects.count(),
        UpliftModel.objects.count(),
    ) == counts
    assert CampaignCycle.objects.count() == len(cycles)


def test_the_comparison_prints_what_the_policy_expected_beside_the_truth(
    settings: Any,
    email_rule: dict[str, Any],  # noqa: F811
) -> None:
    """A policy-targeted second cycle, as the policy dispatch writes it (targeting, selection,
    predicted uplift, expected increment): each cycle's line, the policy's expectation, and
    policy − rules."""
    from campaigns.measurement.snapshots import campaign_cycle_reference_attach
    from campaigns.services.dispatch import campaign_dispatch
    from campaigns.services.relay import interventions_relay
    from campaigns.uplift.report import ReferenceEffect
    from demo.cycle import two_cycles_compare
    from tests.campaigns.conftest import NOON, make_campaign, make_customers

    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.GLOBAL_CONTROL_PERCENT = 0
    customers = make_customers(200)
    campaign = make_campaign(rules=[email_rule], control_percentage=Decimal("30"))
    later = NOON + timedelta(days=31)
    for now, truth in ((NOON, 0.01), (later, 0.09)):
        campaign_dispatch(campaign=campaign, now=now)
        interventions_relay(now=now)
        cycle = CampaignCycle.objects.get(campaign=campaign, started_at=now)
        campaign_cycle_reference_attach(
            cycle=cycle,
            effect=ReferenceEffect(
                label="true", short_label="true", retention_effect=truth, by_tier={}, treated_n=1
            ),
        )
    second = CampaignCycle.objects.get(campaign=campaign, started_at=later)
    CampaignCycle.objects.filter(pk=second.pk).update(targeting="uplift_policy")
    treated = second.interventions.filter(arm="treatment")
    treated.update(selection="policy", predicted_uplift=0.1, expected_increment=2.5)
    for row in treated.select_related("customer")[::2]:
        Order.objects.create(
            external_id=f"p{row.pk}",
            customer=row.customer,
            placed_at=later + timedelta(days=3),
            amount=Decimal("30"),
        )
    n = treated.count()
    assert 0 < n < len(customers)
    figures, lines = two_cycles_compare(campaign=campaign)
    assert [f["targeting"] for f in figures] == ["rules", "uplift_policy"]
    assert figures[1]["expected_customers"] == pytest.approx(0.1 * n)
    assert lines[0].startswith("Cycle 1 (rules, ") and " · true +1.00 pp (" in lines[0]
    policy = next(i for i, line in enumerate(lines) if line.startswith("Cycle 2 (uplift policy"))
    assert " · true +9.00 pp (" in lines[policy]
    expected = (
        f"  the policy expected {0.1 * n:+.1f} customers retained over the {n:,} it "
        "contacted (+10.00 pp each; net value "
    )
    assert any(line.startswith(expected) for line in lines[policy:])
    assert any(line.startswith("  uplift policy − rules: ") for line in lines)
    assert lines[-1] == "  true uplift policy − rules (synthetic truth): +8.00 pp"


def test_a_bad_second_cycle_entry_names_the_field() -> None:
    from demo.cycle import second_cycle_stage

    with pytest.raises(DemoError, match=r"second_cycle\.budget is 'lots'; expected a number"):
        second_cycle_stage(config={"budget": "lots"}, scoring={}, simulate={})
    with pytest.raises(DemoError, match=r"second_cycle\.exploration_percentage is '-5'"):
        second_cycle_stage(config={"exploration_percentage": "-5"}, scoring={}, simulate={})
    # Without a rule-targeted cycle there is nothing to follow up.
    data, lines = second_cycle_stage(config={"budget": "100"}, scoring={}, simulate={})
    assert data == {"ran": False} and "no campaign has a rule-targeted cycle" in lines[0]
