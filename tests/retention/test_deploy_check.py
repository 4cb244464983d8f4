"""`manage.py check --deploy` with production settings reports nothing (HSTS, SSL redirect,
secure cookies, the API key scheme in the schema); development keeps plain HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tests.retention.test_settings import REPO, production_env


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=production_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output
    assert "W001" not in output and "WARNING" not in output


def test_production_settings_turn_https_on(tmp_path: Path) -> None:
    code = (
        "from django.conf import settings as s; import django; django.setup(); "
        "print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE)"
    )
    env = production_env(tmp_path, DJANGO_SETTINGS_MODULE="retention.settings")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.stdout.split() == ["True", "31536000", "True", "True"], result.stderr


def test_development_serves_plain_http(settings: Any) -> None:
    assert not getattr(settings, "SECURE_SSL_REDIRECT", False)
    assert not getattr(settings, "SECURE_HSTS_SECONDS", 0)


@pytest.mark.django_db
def test_the_schema_declares_the_api_key_scheme() -> None:
    schema = Client().get("/api/schema/?format=json").json()
    scheme = schema["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": scheme["description"],
    }
    operation = schema["paths"]["/api/v1/customers/bulk"]["post"]
    assert {"ApiKey": []} in operation["security"]


def test_every_response_carries_the_content_security_policy(client: Client) -> None:
    header = client.get("/admin/login/")["Content-Security-Policy"]
    # Directives in any order (django-csp does not keep one): compare them as a set.
    policy = {d.strip() for d in header.split(";") if d.strip()}
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy  # exactly 'self': no inline or eval
    assert "frame-ancestors 'none'" in policy
