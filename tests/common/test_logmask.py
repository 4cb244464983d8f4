"""Emails and phone numbers never reach a log line: not through the message, its arguments,
an exception's text (PostgreSQL quotes the offending row) or a Celery worker's own handlers."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import IntegrityError, connection, transaction
from redis.utils import _set_info_logger

from common.logmask import PersonalDataMaskFilter, mask_personal_data
from customers.tasks import import_file_task
from retention.celery import app as celery_app
from tests import worker as test_worker

EMAIL, PHONE = "jane.doe@example.com", "+33 6 12 34 56 78"


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("write to jane.doe@example.com now", "write to j***@example.com now"),
        (
            "DETAIL: Key (email)=(x@y.z) already exists.",
            "DETAIL: Key (email)=(x***@y.z) already exists.",
        ),
        ("call +33 6 12 34 56 78", "call +** * ** ** ** 78"),
        ("call +1 (555) 123-4567 or 0612345678", "call +* (***) ***-**67 or ********78"),
        ("'phone': '+15550000003'", "'phone': '+*********03'"),
    ],
)
def test_emails_and_phone_numbers_are_masked(text: str, masked: str) -> None:
    assert mask_personal_data(text) == masked
    assert mask_personal_data(masked) == masked  # a second handler changes nothing more


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-29 23:44:40,123 WARNING run 2026-11-29T02:00 done",
        "probability 0.123456789, amount 12345678.50, order o1234567, version 1.2.3",
        "worker celery@worker-1 on 127.0.0.1:6379",
    ],
)
def test_dates_numbers_and_ids_stay_readable(text: str) -> None:
    assert mask_personal_data(text) == text


@pytest.fixture
def console() -> Iterator[io.StringIO]:
    """The root handler settings.LOGGING configures, writing into a buffer for the test."""
    [handler] = [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler)
        and any(isinstance(f, PersonalDataMaskFilter) for f in h.filters)
    ]
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)  # type: ignore[arg-type]


@pytest.mark.django_db
def test_a_log_line_masks_message_arguments_and_a_database_error(console: io.StringIO) -> None:
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE contact (email text UNIQUE)")
        cursor.execute("INSERT INTO contact VALUES (%s)", [EMAIL])
        try:
            with transaction.atomic():
                cursor.execute("INSERT INTO contact VALUES (%s)", [EMAIL])
        except IntegrityError:
            logging.getLogger("customers.test").exception(
                "Import of %s failed; phone %s", EMAIL, PHONE
            )
    written = console.getvalue()
    if connection.vendor == "postgresql":  # SQLite's error names no value
        assert "Key (email)=(j***@example.com) already exists" in written  # the DETAIL line
    assert "Import of j***@example.com failed; phone +** * ** ** ** 78" in written
    assert EMAIL not in written and PHONE not in written


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_masks_its_own_log_lines(
    require_postgres: None, require_redis: str, tmp_path: Path
) -> None:
    """A failing task's error, as the worker logs it (its handlers, not settings.LOGGING's)."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    env = {"DATABASE_URL": test_worker.test_database_url(), "REDIS_URL": require_redis}
    with log.open("w") as out:
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "retention", "--quiet", "worker"),
                *("--pool=solo", "-Q", queue, "--loglevel=INFO", f"--hostname={queue}@%h"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ],
            cwd=test_worker.REPO,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for_worker(queue)
            missing = tmp_path / f"{EMAIL} {PHONE}.csv"
            result = import_file_task.apply_async(
                kwargs={"kind": "customers", "path": str(missing)}, queue=queue
            )
            with pytest.raises(Exception, match="no such file"):
                result.get(timeout=60)
            _wait_for_line(log, "no such file")  # logged just after the result is stored
        finally:
            worker.terminate()
            worker.wait(timeout=20)
    written = log.read_text()
    assert "j***@example.com +** * ** ** ** 78.csv: no such file" in written
    assert EMAIL not in written and PHONE not in written


def _wait_for_line(log: Path, text: str) -> None:
    deadline = time.monotonic() + 20
    while text not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)


def _wait_for_worker(queue: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if celery_app.control.ping(destination=[f"{queue}@{os.uname().nodename}"], timeout=1):
            return
    raise RuntimeError("the Celery worker did not answer a ping within 60 s")


def test_every_configured_handler_masks() -> None:
    """Django's default handlers (console, mail_admins) and the one redis-py adds on first use
    are replaced; each handler left has the mask."""
    _set_info_logger()  # what redis-py runs on a RESP3 client's first push message
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    handlers = {
        h
        for logger in loggers
        if isinstance(logger, logging.Logger)
        for h in logger.handlers
        # pytest's capture handlers and the libraries' NullHandlers write nowhere we ship.
        if not isinstance(h, logging.NullHandler) and "_pytest" not in type(h).__module__
    }
    assert handlers
    for handler in handlers:
        assert any(isinstance(f, PersonalDataMaskFilter) for f in handler.filters), handler
