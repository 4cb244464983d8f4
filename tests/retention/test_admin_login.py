"""Admin login is rate limited (django-axes): too many wrong passwords for one username from
one address lock it out, even with the right password, until the cool-off or a reset."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db

PASSWORD = "right-pw-123456"


@pytest.fixture
def boss(db: None) -> User:
    return User.objects.create_superuser("boss", password=PASSWORD)


def admin_login(client: Client, password: str, username: str = "boss") -> Any:
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": username, "password": password, "next": "/admin/"},
    )


def fail_until_locked(client: Client, limit: int) -> None:
    for _ in range(limit):
        admin_login(client, "wrong-password")


def test_the_right_password_logs_in(boss: User) -> None:
    response = admin_login(Client(), PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_after_the_failure_limit_the_right_password_is_refused_with_a_readable_page(
    boss: User, settings: Any
) -> None:
    client = Client()
    fail_until_locked(client, settings.AXES_FAILURE_LIMIT)
    response = admin_login(client, PASSWORD)
    assert response.status_code == 429
    page = response.content.decode()
    assert "Login temporarily locked" in page
    assert "15 minutes" in page
    assert "boss" in page
    assert "axes_reset_username" in page
    assert "_auth_user_id" not in client.session


def test_fewer_failures_than_the_limit_do_not_lock(boss: User, settings: Any) -> None:
    client = Client()
    fail_until_locked(client, settings.AXES_FAILURE_LIMIT - 1)
    assert admin_login(client, PASSWORD).status_code == 302


def test_the_lockout_is_per_username_and_address(boss: User, settings: Any) -> None:
    User.objects.create_superuser("other", password=PASSWORD)
    fail_until_locked(Client(), settings.AXES_FAILURE_LIMIT)
    # Another user from the same address, and the same user from another address, log in.
    assert admin_login(Client(), PASSWORD, username="other").status_code == 302
    elsewhere = Client(REMOTE_ADDR="10.0.0.9")
    assert admin_login(elsewhere, PASSWORD).status_code == 302


def test_axes_reset_lifts_the_lockout(boss: User, settings: Any) -> None:
    client = Client()
    fail_until_locked(client, settings.AXES_FAILURE_LIMIT)
    assert admin_login(client, PASSWORD).status_code == 429
    call_command("axes_reset", verbosity=0)
    assert admin_login(client, PASSWORD).status_code == 302


def test_the_lockout_ends_after_the_cool_off(boss: User, settings: Any) -> None:
    from axes.models import AccessAttempt

    client = Client()
    fail_until_locked(client, settings.AXES_FAILURE_LIMIT)
    assert admin_login(client, PASSWORD).status_code == 429
    # Age the recorded failures past the cool-off instead of sleeping 15 minutes.
    past = timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1)
    AccessAttempt.objects.update(attempt_time=past)
    assert admin_login(client, PASSWORD).status_code == 302
