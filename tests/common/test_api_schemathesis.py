"""Schema-driven fuzzing of the whole API (Schemathesis): requests generated from the schema the
app serves, sent in-process to the WSGI app with a real API key against the real database.

Every answer must not be a server error, must have a status code the operation documents,
the documented content type, and a body that matches the documented schema (the success
body, or the one error body). The run is bounded and deterministic: a fixed number of examples
per operation and a derandomized (fixed-seed) generator, so a failure repeats."""

from __future__ import annotations

import os
from collections.abc import Iterator
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

from customers.services import api_client_create

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


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_every_operation_answers_as_its_schema_says(case: Any, all_scopes_key: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Api-Key {all_scopes_key}"}, checks=CHECKS)
