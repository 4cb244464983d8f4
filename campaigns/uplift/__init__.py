"""Pure uplift statistics and uplift models for campaigns: numpy/scipy/pandas only, no Django.

`stats` measures a randomised campaign (treated vs control), `power` sizes the holdout,
`models` ranks customers by predicted uplift. The ORM bridge lives in `campaigns/services.py`.
"""

from campaigns.uplift.power import (
    DetectableEffect,
    RequiredHoldout,
    control_percent_for_effect,
    minimum_detectable_effect,
)
from campaigns.uplift.stats import (
    Economics,
    GroupUplift,
    IncrementalEstimate,
    MeanUplift,
    ProportionUplift,
    UpliftBreakdown,
    campaign_economics,
    incremental_customers,
    incremental_revenue,
    is_binary,
    mean_difference,
    mean_difference_from_summary,
    proportion_difference,
    uplift_breakdown,
)

__all__ = [
    "DetectableEffect",
    "Economics",
    "GroupUplift",
    "IncrementalEstimate",
    "MeanUplift",
    "ProportionUplift",
    "RequiredHoldout",
    "UpliftBreakdown",
    "campaign_economics",
    "control_percent_for_effect",
    "incremental_customers",
    "incremental_revenue",
    "is_binary",
    "mean_difference",
    "mean_difference_from_summary",
    "minimum_detectable_effect",
    "proportion_difference",
    "uplift_breakdown",
]
