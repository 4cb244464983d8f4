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
    """A T-learner per action (rule) on the analysed interventions whose window has finished."""
    top = campaign.interventions.aggregate(m=Max("pk"))["m"] or 0
    rows = intervention_outcomes(campaign=campaign, after_id=0, up_to_id=top)
    window = timedelta(days=int(campaign.attribution_window_days))
    done = rows["in_analysis"].eq(1) & (rows["created_at"].map(_aware) + window <= now)
    values = dict(campaign.interventions.values_list("pk", "customer_value"))
    rows = rows.loc[done].assign(customer_value=lambda f: f["intervention_id"].map(values))
    rows = rows.assign(
        arm=rows["arm"].where(rows["arm"].eq("control"), "rule-" + rows["rule_id"].astype(str)),
        y=rows["orders"].gt(0).astype(int),
    )
    # An arm needs both outcomes to fit a classifier: actions without are left out.
    rows = rows.loc[rows.groupby("arm")["y"].transform("nunique").eq(2)]
    arm = rows["arm"]
    if rows.empty or not arm.eq(CONTROL_ARM).any() or arm.eq(CONTROL_ARM).all():
        return UpliftTraining(None, "no finished window with both arms: nothing to train", 0)
    fitted = fit_multi_action(
        method="t_learner",
        features=rows[FEATURES].astype(float),
        arm=arm.to_numpy(),
        outcome=rows["y"].to_numpy(),
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
            training_window={"first": str(rows["created_at"].min()), "last": str(now)},
            activated_at=now,
        )
    return UpliftTraining(model, f"trained {model.version} on {len(rows):,} rows", len(rows))


def _aware(value: object) -> pd.Timestamp:
    stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
