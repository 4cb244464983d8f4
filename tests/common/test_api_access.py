"""Who may call the API: a client with no scope is refused by every operation (a JSON 403),
and the admin's API-client form refuses an unknown scope as a form error."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from customers.models import ApiClient
from customers.services import api_client_create

pytestmark = pytest.mark.django_db

# Signed by the provider, not called with an API key (tests/campaigns covers their 401/403).
WEBHOOKS = {"/api/v1/webhooks/email", "/api/v1/webhooks/sms"}


def schema_operations() -> list[tuple[str, str]]:
    schema = json.loads(APIClient().get("/api/schema/", {"format": "json"}).content)
    return [
        (method, path)
        for path, item in schema["paths"].items()
        for method in item
        if path not in WEBHOOKS
    ]


def test_a_client_with_no_scope_is_refused_by_every_operation() -> None:
    _client, key = api_client_create(name="nothing", scopes=[])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    operations = schema_operations()
    assert len(operations) >= 11
    for method, path in operations:
        url = re.sub(r"\{campaign_id\}", "1", path)
        url = re.sub(r"\{[a-z_]+\}", "someone", url)
        response = getattr(api, method)(url, {} if method == "get" else [], format="json")
        assert response.status_code == 403, f"{method.upper()} {url}: {response.status_code}"
        error = response.json()["error"]
        assert error["code"] == "permission_denied", f"{method.upper()} {url}: {error}"
        assert "lacks the" in error["message"] and "scope" in error["message"]


def test_the_same_key_sent_as_bearer_is_accepted() -> None:
    _client, key = api_client_create(name="bearer", scopes=["customers:read"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    response = api.get("/api/v1/customers/nobody")
    assert response.status_code == 404  # authenticated and allowed: only the customer is unknown


@pytest.fixture
def admin_client() -> Client:
    user = User.objects.create_superuser("boss", password="admin-pw-1")
    client = Client()
    client.force_login(user)
    return client


def add_client(admin_client: Client, scopes: list[str]) -> Any:
    return admin_client.post(
        "/admin/customers/apiclient/add/",
        {"name": "shop", "scopes": scopes, "is_active": "on"},
        follow=True,
    )


def test_an_unknown_scope_in_the_admin_form_is_a_form_error(admin_client: Client) -> None:
    response = add_client(admin_client, ["customers:read", "everything:admin"])
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "scopes" in errors
    assert "everything:admin is not one of the available choices" in str(errors["scopes"])
    assert not ApiClient.objects.exists()


def test_the_admin_form_creates_the_client_with_the_ticked_scopes(admin_client: Client) -> None:
    response = add_client(admin_client, ["customers:read"])
    assert response.status_code == 200
    assert "shown once, copy it now" in response.content.decode()
    assert ApiClient.objects.get(name="shop").scopes == ["customers:read"]


def test_an_admin_client_with_nothing_ticked_gets_no_scope(admin_client: Client) -> None:
    add_client(admin_client, [])
    assert ApiClient.objects.get(name="shop").scopes == []


def test_head_needs_the_get_scope_and_options_any_scope_of_the_endpoint() -> None:
    _client, key = api_client_create(name="reader", scopes=["customers:read"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert api.head("/api/v1/customers/nobody").status_code == 404  # allowed; no such customer
    assert api.options("/api/v1/customers/nobody").status_code == 200
    refused = api.options("/api/v1/responses")  # the reader has none of its scopes
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    assert api.head("/api/v1/responses").status_code == 405  # POST only
