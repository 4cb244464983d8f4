"""Paths under /api/ that no endpoint has: a JSON 404 for any method (no CSRF page, no 500),
naming the endpoint when only the trailing slash differs."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_a_post_without_the_trailing_slash_gets_json_naming_the_endpoint(api: APIClient) -> None:
    api_csrf = APIClient(enforce_csrf_checks=True)
    api_csrf.credentials(**api._credentials)
    response = api_csrf.post("/api/v1/responses", [], format="json")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert "Did you mean /api/v1/responses/ ?" in error["message"]


def test_an_unknown_path_gets_json_without_a_suggestion(api: APIClient) -> None:
    response = api.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "No API endpoint has this path."


def test_the_benchmark_reference_endpoint_is_not_served_by_default() -> None:
    from django.test import Client

    response = Client().post("/bench/reference-write", "{}", content_type="application/json")
    assert response.status_code == 404
