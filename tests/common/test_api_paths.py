"""Paths under /api/ that no endpoint has: a JSON 404 for any method (no CSRF page, no 500),
naming the endpoint when only the trailing slash differs. Endpoints have no trailing slash."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_a_post_with_a_trailing_slash_gets_json_naming_the_endpoint(api: APIClient) -> None:
    api_csrf = APIClient(enforce_csrf_checks=True)
    api_csrf.credentials(**api._credentials)
    response = api_csrf.post("/api/v1/responses/", [], format="json")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert "Did you mean /api/v1/responses ?" in error["message"]


def test_one_convention_no_trailing_slash_and_the_other_form_is_json(api: APIClient) -> None:
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = list(schema["paths"])
    assert paths and not [p for p in paths if p.endswith("/")]
    for path in paths:
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        for method in schema["paths"][path]:
            if method not in {"get", "post", "put", "delete"}:
                continue
            response = getattr(api, method)(concrete + "/", {}, format="json")
            assert response.status_code == 404, (method, path)
            assert f"Did you mean {concrete} ?" in response.json()["error"]["message"]


def test_an_unknown_path_gets_json_without_a_suggestion(api: APIClient) -> None:
    response = api.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "No API endpoint has this path."


def test_the_benchmark_reference_endpoint_is_not_served_by_default() -> None:
    from django.test import Client

    response = Client().post("/bench/reference-write", "{}", content_type="application/json")
    assert response.status_code == 404


def test_error_details_have_one_shape_for_object_and_list_bodies() -> None:
    from common.api import error_details

    assert error_details({"channel": ["Unknown channel."], "non_field_errors": ["Bad."]}) == [
        {"field": "channel", "message": "Unknown channel."},
        {"field": "", "message": "Bad."},
    ]
    assert error_details([{}, {"amount": ["Too large."]}]) == [
        {"index": 1, "field": "amount", "message": "Too large."}
    ]
    assert error_details({"attributes": {"age": ["Not a number."]}}) == [
        {"field": "attributes.age", "message": "Not a number."}
    ]
    assert error_details(["Expected a list."]) == [{"field": "", "message": "Expected a list."}]
