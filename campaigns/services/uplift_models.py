"""Train a campaign's uplift model on its own randomised interventions. MINIMAL VERSION, replaced
at merge by upliftapp's version (same signature: uplift_model_train(*, campaign, now))."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pandas as pd
from django.db import transaction
from django.db.models import Max

from campaigns.measurement.outcomes import intervention_outcomes
from campaigns.models import Campaign, UpliftModel, UpliftModelStatus
from campaigns.uplift.models import CONTROL_ARM, fit_multi_action

FEATURES = ["churn_probability", "customer_value"]


@dataclass(frozen=True)
class UpliftTraining:
    model: UpliftModel | None
    message: str
    rows: int


def uplift_model_train(*, campaign: Campaign, now: datetime) -> UpliftTraining:
    """A T-learner per action (rule) on the analysed interventions whose window has finished;
    an arm without both outcomes is left out. Registered as the campaign's champion."""
    top = campaign.interventions.aggregate(m=Max("pk"))["m"] or 0
    rows = intervention_outcomes(campaign=campaign, after_id=0, up_to_id=top)
    closes = pd.to_datetime(rows["created_at"], utc=True) + timedelta(
        days=int(campaign.attribution_window_days)
    )
    values = dict(campaign.interventions.values_list("pk", "customer_value"))
    rows = rows.loc[rows["in_analysis"].eq(1) & closes.le(pd.Timestamp(now))].assign(
        customer_value=lambda f: f["intervention_id"].map(values),
        arm=lambda f: f["arm"].where(f["arm"].eq("control"), "rule-" + f["rule_id"].astype(str)),
        y=lambda f: f["orders"].gt(0).astype(int),
    )
    rows = rows.loc[rows.groupby("arm")["y"].transform("nunique").eq(2)]
    if not rows["arm"].eq(CONTROL_ARM).any() or rows["arm"].eq(CONTROL_ARM).all():
        return UpliftTraining(None, "no finished window with both arms: nothing to train", 0)
    fitted = fit_multi_action(
        method="t_learner",
        features=rows[FEATURES].astype(float),
        arm=rows["arm"],
        outcome=rows["y"],
    )
    with transaction.atomic():
        campaign.uplift_models.filter(status=UpliftModelStatus.CHAMPION).update(status="retired")
        model = UpliftModel.objects.create(
            campaign=campaign,
            version=f"uplift-{campaign.pk}-{now:%Y%m%d%H%M%S}",
            status=UpliftModelStatus.CHAMPION,
            method=fitted.method,
            actions=[{"key": key} for key in fitted.actions],
            feature_names=FEATURES,
            training_rows=len(rows),
            training_window={"first": str(rows["created_at"].min()), "last": now.isoformat()},
            activated_at=now,
        )
    return UpliftTraining(model, f"trained {model.version} on {len(rows):,} rows", len(rows))
