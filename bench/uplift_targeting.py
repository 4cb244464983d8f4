"""Benchmark: uplift targeting on a campaign's own holdout — training an uplift model on its
finished interventions, and one cycle's plan in uplift policy mode against the same cycle's
plan in rules mode (the reference, measured in the same run on the same customers).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/retention_bench_uplift_targeting \
        BENCH_CUSTOMERS=20000 python bench/uplift_targeting.py

The policy plan reads the same candidates, predicts every candidate's uplift per action (the
churn features as of now), and allocates once; the ratio says what that costs over rules.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from _postgres import ensure_database_url  # noqa: E402
from _summary import figure, summary_print  # noqa: E402

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/retention_bench_uplift_targeting"
CUSTOMERS = int(os.environ.get("BENCH_CUSTOMERS", "20000"))


def main() -> None:
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    if not url.startswith("postgres"):
        sys.exit("bench/uplift_targeting.py needs PostgreSQL: DATABASE_URL=postgres://...")
    ensure_database_url(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retention.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    call_command("flush", verbosity=0, interactive=False)
    settings.MODEL_ARTIFACT_DIR = Path(tempfile.mkdtemp())
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.CONSENT_DEFAULTS = {**settings.CONSENT_DEFAULTS, "sms": True}
    settings.GLOBAL_CONTROL_PERCENT = 0

    from campaigns.models import Campaign, Targeting
    from campaigns.services.dispatch import campaign_preview
    from campaigns.services.uplift_models import uplift_model_train
    from tests.campaigns.uplift_fixtures import (
        customers_with_history,
        finished_cycles,
        two_action_campaign,
    )

    started = time.perf_counter()
    customers_with_history(CUSTOMERS)
    campaign = two_action_campaign()
    later = finished_cycles(campaign)
    setup = time.perf_counter() - started
    print(f"setup: {CUSTOMERS:,} customers with history, one cycle and outcomes: {setup:.1f} s")

    started = time.perf_counter()
    result = uplift_model_train(campaign=campaign, now=later)
    train = time.perf_counter() - started
    if result.model is None:
        sys.exit(f"training failed: {result.message}")
    print(f"train: {result.rows:,} rows in {train:.1f} s — {result.message}")

    started = time.perf_counter()
    rules = campaign_preview(campaign=campaign, now=later)
    rules_seconds = time.perf_counter() - started
    Campaign.objects.filter(pk=campaign.pk).update(
        targeting=Targeting.UPLIFT_POLICY, policy_budget=Decimal(CUSTOMERS)
    )
    campaign.refresh_from_db()
    started = time.perf_counter()
    policy = campaign_preview(campaign=campaign, now=later)
    policy_seconds = time.perf_counter() - started
    ratio = policy_seconds / rules_seconds
    expected = policy.policy["expected"]
    print(
        f"plan, rules mode: {rules.eligible:,} customers in {rules_seconds:.2f} s; "
        f"uplift policy: {policy.policy['candidates']:,} candidates, {policy.eligible:,} chosen "
        f"in {policy_seconds:.2f} s (x{ratio:.1f} the rules plan)"
    )
    print(
        f"expected incremental retained: policy {expected['policy']['retained']:,.1f} vs "
        f"{expected['risk']['retained']:,.1f} for as many customers by risk"
    )
    summary_print(
        [
            figure("uplift training", train, "s", reference=None),
            figure(
                "uplift policy plan",
                policy_seconds,
                "s",
                reference=rules_seconds,
                ratio=ratio,
            ),
        ],
        size=f"{CUSTOMERS} customers",
    )


if __name__ == "__main__":
    main()
