"""Production settings refuse what would silently harm customers: each case imports the
settings in a fresh interpreter with the environment an operator would set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# A test value shaped like a real one (Django's check --deploy rejects short or repetitive keys).
PRODUCTION_SECRET = "test-only-production-secret-key-0123456789-abcdefghijklmnop"


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The smallest production environment that starts: a long secret, real backends."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SMS_", "EMAIL_", "ALLOW_TEST_", "DJANGO_SETTINGS"))
    }
    env.update(
        RETENTION_ENV="production",
        SECRET_KEY=PRODUCTION_SECRET,
        RETENTION_VAR_DIR=str(tmp_path),
        ALLOWED_HOSTS="crm.example.com",
        SMS_BACKEND="twilio",
        EMAIL_BACKEND="smtp",
    )
    env.update(overrides)
    return env


def import_settings(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import retention.settings"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_starts_with_real_delivery_backends(tmp_path: Path) -> None:
    for sms in ("twilio", "webhook"):
        result = import_settings(production_env(tmp_path, SMS_BACKEND=sms))
        assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("sms", ["console", "file"])
def test_production_refuses_an_sms_backend_that_does_not_send(tmp_path: Path, sms: str) -> None:
    result = import_settings(production_env(tmp_path, SMS_BACKEND=sms))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"SMS_BACKEND='{sms}'" in result.stderr
    assert "webhook, twilio" in result.stderr
    assert "ALLOW_TEST_BACKENDS_IN_PRODUCTION" in result.stderr


def test_production_refuses_the_console_sms_default(tmp_path: Path) -> None:
    env = production_env(tmp_path)
    del env["SMS_BACKEND"]
    result = import_settings(env)
    assert result.returncode != 0
    assert "SMS_BACKEND='console'" in result.stderr


@pytest.mark.parametrize(
    "email", ["console", "file", "locmem", "django.core.mail.backends.dummy.EmailBackend"]
)
def test_production_refuses_an_email_backend_that_does_not_send(tmp_path: Path, email: str) -> None:
    result = import_settings(production_env(tmp_path, EMAIL_BACKEND=email))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert f"EMAIL_BACKEND='{email}'" in result.stderr
    assert "smtp" in result.stderr


def test_the_staging_override_lets_test_backends_start(tmp_path: Path) -> None:
    env = production_env(
        tmp_path, SMS_BACKEND="file", EMAIL_BACKEND="file", ALLOW_TEST_BACKENDS_IN_PRODUCTION="1"
    )
    assert import_settings(env).returncode == 0


def test_development_keeps_the_console_and_file_defaults(tmp_path: Path) -> None:
    env = production_env(tmp_path, RETENTION_ENV="development")
    del env["SMS_BACKEND"], env["EMAIL_BACKEND"]
    assert import_settings(env).returncode == 0
