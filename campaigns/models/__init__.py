"""The campaigns app's models, one module per sub-domain: setup.py (campaigns, offers,
templates, rules), delivery.py (cycles, interventions, coupons, callbacks, responses) and
reports.py (uplift snapshots).

Django finds an app's models through its `models` module, so this package imports them here
(the layout Django documents for a models package); code imports them from `campaigns.models`.
"""

from campaigns.models.delivery import (
    COUNTED_STATUSES,
    Arm,
    CallbackOutcome,
    CallbackStatus,
    CallbackTask,
    CampaignCycle,
    Coupon,
    FailureReason,
    Intervention,
    InterventionStatus,
    MyCallback,
    RelayRateWindow,
    Response,
    ResponseKind,
    SuppressionReason,
)
from campaigns.models.reports import (
    ReportKind,
    ReportStatus,
    UpliftReport,
)
from campaigns.models.setup import (
    COUPON_KINDS,
    AttributeOperator,
    Cadence,
    Campaign,
    CampaignMode,
    CampaignStatus,
    ContactChannel,
    MessageTemplate,
    Offer,
    OfferKind,
    Rule,
    new_salt,
    validate_attribute_conditions,
)

__all__ = [
    "COUNTED_STATUSES",
    "COUPON_KINDS",
    "Arm",
    "AttributeOperator",
    "Cadence",
    "CallbackOutcome",
    "CallbackStatus",
    "CallbackTask",
    "Campaign",
    "CampaignCycle",
    "CampaignMode",
    "CampaignStatus",
    "ContactChannel",
    "Coupon",
    "FailureReason",
    "Intervention",
    "InterventionStatus",
    "MessageTemplate",
    "MyCallback",
    "Offer",
    "OfferKind",
    "RelayRateWindow",
    "ReportKind",
    "ReportStatus",
    "Response",
    "ResponseKind",
    "Rule",
    "SuppressionReason",
    "UpliftReport",
    "new_salt",
    "validate_attribute_conditions",
]
