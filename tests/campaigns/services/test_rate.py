"""The per-channel rate is per minute across every relay process, not per relay run."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from campaigns.models import Intervention, RelayRateWindow
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.rate import relay_rate_return, relay_rate_take
from campaigns.services.relay import interventions_relay
from tests.campaigns.conftest import NOON, make_campaign, make_customers

pytestmark = pytest.mark.django_db


def test_the_window_grants_at_most_the_limit_per_minute_and_takes_back_the_unused() -> None:
    def take(wanted: int, at: Any = NOON) -> int:
        return relay_rate_take(channel="email", limit=12, wanted=wanted, now=at)

    assert [take(5), take(10), take(1)] == [5, 7, 0]
    relay_rate_return(channel="email", count=3, now=NOON + timedelta(seconds=59))
    assert take(5) == 3
    assert relay_rate_take(channel="sms", limit=2, wanted=5, now=NOON) == 2  # its own window
    assert take(20, NOON + timedelta(minutes=1)) == 12  # a new minute, a new window
    relay_rate_take(channel="email", limit=12, wanted=1, now=NOON + timedelta(days=2))
    assert not RelayRateWindow.objects.filter(
        channel="email", window_start__lt=NOON + timedelta(days=1)
    ).exists()


def test_two_relay_runs_in_one_minute_send_the_rate_once_and_the_rest_waits(
    email_rule: dict[str, Any],
) -> None:
    make_customers(30)
    campaign_dispatch(campaign=make_campaign(rules=[email_rule], control_percentage=0), now=NOON)
    rate = {"email": 12}
    first = interventions_relay(now=NOON, max_per_channel=rate)
    second = interventions_relay(now=NOON + timedelta(seconds=30), max_per_channel=rate)
    assert first.sent == {"email": 12} and second.sent == {} and second.rate_limited == ["email"]
    assert Intervention.objects.filter(status="pending", attempts=0).count() == 18
    assert not Intervention.objects.filter(status="failed").exists()
    assert interventions_relay(now=NOON + timedelta(minutes=1), max_per_channel=rate).sent == {
        "email": 12
    }


def test_rows_stopped_at_send_do_not_use_the_rate(email_rule: dict[str, Any]) -> None:
    make_customers(5, erased=True)  # erased after the dispatch: the relay's last check stops them
    make_customers(10, start=100)
    campaign_dispatch(campaign=make_campaign(rules=[email_rule], control_percentage=0), now=NOON)
    Intervention.objects.filter(customer__erased=True).update(status="pending", reason="")
    relayed = interventions_relay(now=NOON, max_per_channel={"email": 10})
    assert relayed.suppressed_at_send == {"erased": 5} and relayed.sent == {"email": 10}


@pytest.mark.django_db(transaction=True)
def test_relays_in_parallel_threads_together_send_at_most_the_rate(
    require_postgres: None, email_rule: dict[str, Any], settings: Any
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    make_customers(400)
    campaign_dispatch(campaign=make_campaign(rules=[email_rule], control_percentage=0), now=NOON)
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def relay() -> None:
        try:
            start.wait()
            for second in range(3):
                interventions_relay(
                    now=NOON + timedelta(seconds=second), max_per_channel={"email": 250}
                )
        except BaseException as exc:  # reported below: a thread's failure must fail the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=relay) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert Intervention.objects.filter(status="sent").count() == 250
    assert Intervention.objects.filter(status="pending", attempts=0).count() == 150
