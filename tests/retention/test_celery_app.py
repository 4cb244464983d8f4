"""The Celery app waits out a Redis outage instead of exiting (docs/operations.md). The outage
itself, with a real worker, is tests/campaigns/test_worker_faults.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from kombu import Connection

from retention.celery import app
from tests.retention.test_settings import import_settings, production_env


def test_workers_retry_the_broker_forever_and_keep_running_tasks_on_a_loss() -> None:
    conf = app.conf
    assert conf.broker_connection_retry_on_startup is True
    assert conf.broker_connection_max_retries is None  # Celery's default (100) ends the worker
    assert conf.worker_cancel_long_running_tasks_on_connection_loss is False
    options = conf.broker_transport_options
    assert options["socket_timeout"] > 1  # above kombu's 1 s BRPOP wait
    assert options["health_check_interval"] > 0 and options["retry_on_timeout"] is True
    assert options["visibility_timeout"] > conf.task_time_limit


@pytest.mark.redis
def test_a_channel_of_a_closed_broker_connection_fails_as_a_connection_error(
    require_redis: str,
) -> None:
    """kombu 5.7.0 builds a Redis pool from a transport whose client is gone when it closes a
    channel after a broker loss; the AttributeError that followed ended the worker (issue 12).
    The guard in retention/celery.py turns it into the connection error Celery retries."""
    with Connection(require_redis) as connection:
        channel: object = connection.channel()
        transport = channel.connection  # type: ignore[attr-defined]
        client, transport.client = transport.client, None
        channel._pool = None  # type: ignore[attr-defined]
        try:
            with pytest.raises(redis.exceptions.ConnectionError):
                channel.pool  # type: ignore[attr-defined]  # noqa: B018
        finally:
            transport.client = client


def test_a_relay_lease_or_stale_limit_under_two_seconds_is_refused(tmp_path: Path) -> None:
    for name in ("CAMPAIGN_RELAY_LEASE_SECONDS", "CAMPAIGN_RELAY_SENDING_STALE_SECONDS"):
        result = import_settings(production_env(tmp_path, **{name: "1"}))
        assert result.returncode != 0
        assert "ImproperlyConfigured" in result.stderr and name in result.stderr
