"""The scoring admin: editing tiers re-tiers the latest run at once and says who moved; bad
tiers are refused in words; scores show percentages, swatches and reasons; drift is a table."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from scoring.models import CustomerScore, RiskTier, ScoringRun
from scoring.services.tiers import tiers_reassign
from tests.scoring.services.test_tiers import stored_run

pytestmark = pytest.mark.django_db


def changelist_post(client: Client, shares: dict[str, str], modes: dict[str, str] | None = None):
    tiers = list(RiskTier.objects.order_by("-severity"))
    data: dict[str, Any] = {
        "form-TOTAL_FORMS": str(len(tiers)),
        "form-INITIAL_FORMS": str(len(tiers)),
        "_save": "Save",
    }
    for i, tier in enumerate(tiers):
        data[f"form-{i}-id"] = str(tier.pk)
        data[f"form-{i}-mode"] = (modes or {}).get(tier.name, tier.mode)
        stored = "" if tier.share is None else f"{tier.share * 100:g}"
        data[f"form-{i}-share"] = shares.get(tier.name, stored)
        data[f"form-{i}-min_probability"] = f"{tier.min_probability * 100:g}"
    return client.post("/admin/scoring/risktier/", data, follow=True)


def test_saving_tiers_retiers_the_latest_run_and_says_how_many_moved(admin_client: Client):
    run = stored_run([(k + 1) / 100 for k in range(100)])  # customer k has p = k%
    tiers_reassign()  # the defaults: critical k 96–100, high 86–95, medium 66–85, low 1–65
    response = changelist_post(admin_client, {"critical": "10"})
    text = response.content.decode()
    # Critical 5% → 10%: critical k 91–100, high 81–90, medium 61–80, low 1–60 — so k 91–95
    # move high → critical, k 81–85 medium → high, k 61–65 low → medium.
    assert (
        "15 customers moved in run nightly (high → critical 5, medium → high 5, "
        "low → medium 5)" in text
    )
    assert RiskTier.objects.get(name="critical").share == pytest.approx(0.10)
    run.refresh_from_db()
    assert run.tier_counts == {"critical": 10, "high": 10, "medium": 20, "low": 60}
    assert CustomerScore.objects.filter(run=run, tier="critical").count() == 10
    assert ScoringRun.objects.count() == 1  # no new scoring run


def test_tiers_whose_shares_pass_100_percent_are_refused_in_words(admin_client: Client):
    stored_run([0.5, 0.6])
    response = changelist_post(admin_client, {"critical": "60", "high": "30"})
    text = response.content.decode()
    assert response.status_code == 200
    assert "the rank shares add up to 110.0%: they must add up to 100% or less" in text
    assert RiskTier.objects.get(name="critical").share == pytest.approx(0.05)


def test_score_and_run_pages_show_percentages_swatches_and_a_drift_table(
    admin_client: Client,
) -> None:
    run = stored_run([0.734, None])
    CustomerScore.objects.filter(probability=0.734).update(tier="critical")
    run.drift = {
        "psi": {"tenure_days": 3.8, "orders_90d": 0.02},
        "feature_status": {"tenure_days": "alert", "orders_90d": "ok"},
        "score_psi": 1.34,
        "status": "alert",
        "n_rows": 1,
    }
    run.reasons_from, run.at_risk_from = 0.2734, 0.3038
    run.timings = {"explained_at_finish": 1234}
    run.customers_total, run.customers_scored = 4372, 4328
    run.save()
    scores = admin_client.get("/admin/scoring/customerscore/").content.decode()
    assert "73.4%" in scores and "not scorable" in scores and "no order" in scores
    assert "background:#d32f2f" in scores  # the critical swatch, not its hex code as text
    # The tier filter lists tiers by severity, then "not scorable".
    order = [scores.index(f"?tier={name}") for name in ("critical", "high", "medium", "low")]
    assert order == sorted(order) and scores.index("?tier=not_scorable") > order[-1]
    page = admin_client.get(f"/admin/scoring/scoringrun/{run.pk}/change/").content.decode()
    assert "The population changed: retrain" in page
    assert "<td>tenure_days</td>" in page and "3.800" in page and "changed" in page
    assert "{&quot;psi&quot;" not in page and '{"psi"' not in page  # no JSON blob
    assert "4,372" in page and "4,328" in page and "4372" not in page  # thousands separators
    listed = admin_client.get("/admin/scoring/scoringrun/").content.decode()
    assert "4,328" in listed and "Customers scored" in listed
    assert (
        "The chunks explained customers with a churn risk of at least 27.3% (just below the "
        "last run&#x27;s at-risk bound); the finish explained 1,234 more. Lowest risk above the "
        "least severe tier: 30.4%." in page
    )


def test_a_tier_edited_on_its_own_page_is_applied_and_the_action_applies_now(
    admin_client: Client,
) -> None:
    stored_run([(k + 1) / 100 for k in range(100)])
    high = RiskTier.objects.get(name="high")
    page = admin_client.get(f"/admin/scoring/risktier/{high.pk}/change/")
    assert page.status_code == 200 and 'value="10"' in page.content.decode()  # 10%, not 0.1
    response = admin_client.post(
        f"/admin/scoring/risktier/{high.pk}/change/",
        {
            "name": "high",
            "severity": "2",
            "mode": "band",
            "share": "",
            "min_probability": "50",
            "color": "#ff7043",
        },
        follow=True,
    )
    # From all low: critical k 96–100 (top 5%), high p ≥ 50% k 50–95, medium none left in the
    # top 5% + 20%, low k 1–49.
    assert "51 customers moved in run nightly" in response.content.decode()
    listing = admin_client.post(
        "/admin/scoring/risktier/",
        {"action": "apply_now", "_selected_action": [high.pk]},
        follow=True,
    ).content.decode()
    assert "No customer changed tier in run nightly" in listing
    assert "46 (46.0%)" in listing  # the high tier's size in the latest run


def test_the_model_page_reads_in_words_with_its_latest_drift(admin_client: Client) -> None:
    run = stored_run([0.2, 0.9])
    model = run.model
    model.threshold, model.positive_rate = 0.3183184491297375, 0.7516758591429784
    model.label_definition = {"kind": "behaviour", "horizon_days": 180, "as_of": "1998-01-01"}
    model.training_window = {"train_cutoff": "1997-07-05T00:00:00+00:00"}
    model.library_versions = {"python": "3.11.7", "numpy": "2.4.6"}
    model.save()
    run.drift = {"psi": {"tenure_days": 3.8}, "score_psi": 1.34, "status": "alert"}
    run.save()
    page = admin_client.get(f"/admin/scoring/churnmodel/{model.pk}/change/").content.decode()
    assert "31.8%" in page and "75.2%" in page and "0.3183184" not in page
    assert "no order in the 180 days after the cutoff" in page
    assert "train cutoff 1997-07-05" in page and "python 3.11.7" in page and "numpy 2.4.6" in page
    assert "{&quot;" not in page  # no JSON anywhere
    assert f"Run {run.run_key} as of" in page and "The population changed: retrain" in page
