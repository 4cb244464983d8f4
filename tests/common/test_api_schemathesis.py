"""Schema-driven fuzzing of the whole API (Schemathesis): requests generated from the schema the
app serves, sent in-process to the WSGI app with a real API key against the real database.

Every other case whose path names something (a customer, a coupon, a campaign) is pointed at a
real one of a dispatched campaign, so success bodies (a customer, its coupons, the uplift
report, a consent change, a redemption) are checked too, not only 404s.

Every answer must not be a server error, must have a status code the operation documents,
the documented content type, and a body that matches the documented schema (the success
body, or the one error body). The run is bounded and deterministic: a fixed number of examples
per operation and a derandomized (fixed-seed) generator, so a failure repeats."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from campaigns.models import Coupon, InboxMessage
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from customers.services import api_client_create, device_register
from tests.campaigns.conftest import NOON, make_campaign, make_customers, make_offer, make_template

# 20 examples per operation (x 13 operations) keeps the run near a minute on 2 cores while
# still reaching each operation's required, optional and invalid fields. API_FUZZ_EXAMPLES
# raises it for a deeper run by hand (e.g. 500); the seed stays fixed either way.
EXAMPLES_PER_OPERATION = int(os.environ.get("API_FUZZ_EXAMPLES", "20"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
# Alternates generated and real path values, the same way on every run.
CASE_NUMBERS = itertools.count()


@pytest.fixture
def wsgi_keeps_the_test_connection() -> Iterator[None]:
    """As Django's test client does: the end of a request must not close the connection that
    holds the test's transaction (the WSGI handler's request signals would)."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def all_scopes_key(db: None, wsgi_keeps_the_test_connection: None) -> str:
    """A fresh client per operation: the per-client rate limit is not shared between them."""
    _client, key = api_client_create(name="schemathesis")
    return key


@pytest.fixture
def real_path_values(db: None, settings: Any) -> dict[str, Any]:
    """A campaign dispatched to 10 customers, its emails sent: path values that exist."""
    settings.CAMPAIGN_QUIET_HOURS = (0, 0)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.GLOBAL_CONTROL_PERCENT = 0
    make_customers(10)
    rule = {
        "name": "critical by email",
        "tiers": ["critical"],
        "channel": "email",
        "offer": make_offer(),
        "template": make_template("email"),
    }
    campaign = make_campaign(rules=[rule], control_percentage=Decimal("30"))
    campaign_dispatch(campaign=campaign, now=NOON)
    interventions_relay(now=NOON)
    coupon = Coupon.objects.select_related("customer").order_by("pk").first()
    assert coupon is not None
    # A push device and an in-app message of the same customer (docs/channels.md).
    device = device_register(customer=coupon.customer, platform="ios", token="fuzz-token").device
    message = InboxMessage.objects.create(
        intervention=coupon.intervention,
        customer=coupon.customer,
        title="A gift",
        body="15% off",
        created_at=NOON,
        expires_at=NOON + timedelta(days=3650),
    )
    return {
        "external_id": coupon.customer.external_id,
        "code": coupon.code,
        "campaign": campaign.key,
        "device_id": device.pk,
        "message_id": message.pk,
    }


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_operation_answers_as_its_schema_says(
    case: Any, all_scopes_key: str, real_path_values: dict[str, Any]
) -> None:
    if case.path_parameters and next(CASE_NUMBERS) % 2:
        case.path_parameters = {name: real_path_values[name] for name in case.path_parameters}
    case.call_and_validate(headers={"Authorization": f"Api-Key {all_scopes_key}"}, checks=CHECKS)
