"""The Celery app waits out a Redis outage instead of exiting (docs/operations.md). The outage
itself, with a real worker, is tests/campaigns/test_worker_faults.py."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from celery.fixups.django import DjangoWorkerFixup
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
    assert options["unacked_restore_interval"] == 10 and options["unacked_restore_throttle"] == 1
    # Celery's Django fixup reads this: database connections are kept from task to task.
    assert DjangoWorkerFixup(app).db_reuse_max == 100


@pytest.mark.django_db(transaction=True)
def test_a_workers_connection_is_closed_at_a_task_boundary_only_past_its_age(
    require_postgres: None,
) -> None:
    """What Django does around a request, at each task's start and end in a worker: the
    connection is kept until CONN_MAX_AGE, then closed; never in an eager task, which runs in
    its caller's process (perhaps inside its transaction)."""
    from django.db import connection

    from retention.celery import _close_old_connections

    in_worker = SimpleNamespace(request=SimpleNamespace(is_eager=False))
    eager = SimpleNamespace(request=SimpleNamespace(is_eager=True))
    connection.ensure_connection()
    assert connection.settings_dict["CONN_MAX_AGE"] > 0
    kept = connection.connection
    _close_old_connections(task=in_worker)
    assert connection.connection is kept
    connection.close_at = time.monotonic() - 1  # past its age
    _close_old_connections(task=eager)
    assert connection.connection is kept
    _close_old_connections(task=in_worker)
    assert connection.connection is None


@pytest.mark.redis
def test_a_dead_workers_task_is_put_back_at_the_first_look_past_the_visibility_timeout(
    require_redis: str,
) -> None:
    """A worker SIGKILLed with a task in hand never acknowledges it; the others put it back on
    its queue when they look. kombu's default scans only every tenth look (~100 s apart), which
    let the cycle's kill test run out of time on a slow machine; ours scans on every look."""
    options = {**app.conf.broker_transport_options, "visibility_timeout": 1}
    queue = f"test-restore-{uuid.uuid4().hex[:8]}"
    with Connection(require_redis, transport_options=options) as connection:
        tasks = connection.SimpleQueue(queue)
        tasks.put({"chunk": 3})
        tasks.get(timeout=5)  # delivered and never acknowledged: its worker died
        channel: object = tasks.channel
        client = channel.client  # type: ignore[attr-defined]
        assert client.llen(queue) == 0

        def look() -> None:  # what every worker does every unacked_restore_interval seconds
            channel.qos.restore_visible(  # type: ignore[attr-defined]
                num=channel.unacked_restore_limit,  # type: ignore[attr-defined]
                interval=channel.unacked_restore_throttle,  # type: ignore[attr-defined]
            )

        look()  # a look within the timeout leaves it
        assert client.llen(queue) == 0
        time.sleep(1.5)
        look()  # the next look, past the timeout
        assert client.llen(queue) == 1
        client.delete(queue)


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
