"""The demo's two cycles on a slice of the shop (every 16th customer): cycle 1 by rules on the
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
from tests.demo.test_shop import REPO, SHOP_FILE, shop_sample

pytestmark = pytest.mark.django_db


def shop_slice(tmp_path: Path) -> Path:
    """demo/sources.json on every 16th customer of the shop, one churn candidate."""
    spec = json.loads((REPO / "demo" / "sources.json").read_text())
    spec["imports"][0]["path"] = str(shop_sample(tmp_path, every=16))
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
    options = CycleOptions(sources=sources_load(shop_slice(tmp_path)))
    printed: list[str] = []
    results = run_cycle(options, on_stage=lambda _name, result: printed.extend(result.lines))

    campaign = Campaign.objects.get(name="Win-back (demo)")
    first, second = campaign.cycles.order_by("started_at")
    assert first.started_at == datetime(2011, 12, 10, 9, tzinfo=UTC)
    assert first.targeting == "rules"
    window = timedelta(days=campaign.attribution_window_days)
    assert second.started_at == first.started_at + window + timedelta(days=1)
    # Cycle 1's simulated orders follow the shop's history and precede cycle 2's rescore,
    # which counts them.
    simulated = Order.objects.filter(external_id__startswith="sim-")
    cycle_one = simulated.filter(placed_at__lt=second.started_at)
    assert cycle_one.exists()
    assert min(o.placed_at for o in cycle_one) > datetime(2011, 12, 10, tzinfo=UTC)
    runs = list(ScoringRun.objects.order_by("as_of").values_list("as_of", flat=True))
    assert [r.date().isoformat() for r in runs] == ["2011-12-10", "2012-01-10"]
    # The campaign now targets by uplift policy, with the sources file's budget; the model was
    # trained on cycle 1's finished windows only.
    assert campaign.targeting == "uplift_policy"
    assert campaign.policy_budget == Decimal("1200")
    model = UpliftModel.objects.get(campaign=campaign)
    assert model.status == "champion" and 0 < model.training_rows <= first.interventions.count()
    assert second.targeting in ("rules", "uplift_policy")
    if second.targeting == "uplift_policy":
        assert Intervention.objects.filter(cycle=second, selection="policy").exists()
    # Both cycles simulated with the per-action truth, and printed beside it.
    for cycle in (first, second):
        assert cycle.summary["simulation"]["truth"] == "actions"
    data = results["second_cycle"]
    assert [c["cycle_key"] for c in data["cycles"]] == [first.cycle_key, second.cycle_key]
    assert all(c["true_effect"] is not None and c["ci"] is not None for c in data["cycles"])
    text = "\n".join(printed)
    assert "Cycle 1 (rules, 2011-12-10, " in text and "Cycle 2 (" in text
    assert " · true " in text.split("Cycle 2 (")[1]
    if second.targeting == "uplift_policy":
        assert "uplift policy − rules: " in text and "the policy expected " in text

    counts = (Order.objects.count(), Intervention.objects.count(), UpliftModel.objects.count())
    run_cycle(options, only=["dispatch", "simulate", "second_cycle"])  # a rerun: all done
    assert (
        Order.objects.count(),
        Intervention.objects.count(),
        UpliftModel.objects.count(),
    ) == counts
    assert CampaignCycle.objects.count() == 2
