"""Start a real Celery worker for integration tests, on its own queue and the test database;
`email_worker` (or `smtp_worker_env`) for the tests whose worker delivers email."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from django.db import connection
from kombu.exceptions import OperationalError

from retention.celery import app
from tests.campaigns.servers import SmtpRecorder, smtp_server

REPO = Path(__file__).resolve().parent.parent


def smtp_worker_env(smtp_port: int, **extra: str) -> dict[str, str]:
    """The environment of a worker that delivers email to the local SMTP server on
    `smtp_port` (tests/campaigns/servers.py) at any hour and to everyone the campaign treats
    (no program-wide holdout); `extra` adds or overrides variables."""
    return {
        "EMAIL_BACKEND": "smtp",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp_port),
        "CAMPAIGN_QUIET_HOURS": "0-0",
        "GLOBAL_CONTROL_PERCENT": "0",
        **extra,
    }


def test_database_url() -> str:
    """The URL of the database this test run uses (pytest-django's test_… database)."""
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@dataclass(frozen=True)
class RunningWorker:
    """A worker subprocess, addressed through a Celery client of ITS broker. The client is a
    separate app on purpose: the project's app publishes through its producer pool on REDIS_URL
    even when given another connection, so a worker on a private Redis would never hear it."""

    queue: str
    hostname: str  # the node name a control command addresses
    process: subprocess.Popen[bytes]
    broker_url: str

    @contextmanager
    def client(self) -> Iterator[Celery]:
        """A new client app per use: one that was connected before a broker restart fails its
        next command on a dead pooled connection, even after `close()`."""
        # Not the current app: shared tasks must keep resolving to the project's app.
        client = Celery("worker-test-client", broker=self.broker_url, set_as_current=False)
        try:
            yield client
        finally:
            client.close()

    def answers_ping(self, timeout: float = 1.0) -> bool:
        """Whether the worker answers a control ping through the broker. After a broker restart
        the first command of this process can still meet a connection the old server closed
        (kombu keeps some poller state across apps); that is the client's, so ask again."""
        for _attempt in range(3):
            try:
                with self.client() as client:
                    return bool(client.control.ping(destination=[self.hostname], timeout=timeout))
            except (redis.exceptions.ConnectionError, OperationalError):
                time.sleep(0.5)
        return False

    def pid(self) -> int:
        """The pid of the process that runs tasks (the worker itself with the solo pool)."""
        with self.client() as client:
            stats = client.control.inspect(destination=[self.hostname], timeout=5).stats()
        return int((stats or {})[self.hostname]["pid"])

    def send(self, task: str, *args: Any) -> None:
        """Enqueue `task` (its dotted name) on this worker's queue, as beat or a view would."""
        with self.client() as client:
            client.send_task(task, args=args, queue=self.queue)


@contextmanager
def celery_worker(
    redis_url: str, *, extra_env: dict[str, str] | None = None, concurrency: int = 1
) -> Iterator[str]:
    """Run `celery -A retention worker` on a fresh queue; yield the queue name.

    One process (the solo pool) by default; `concurrency` > 1 starts a prefork pool of that
    many processes (how production runs it; bench/scoring.py times a run that way).
    """
    with celery_worker_process(redis_url, extra_env=extra_env, concurrency=concurrency) as worker:
        yield worker.queue


@contextmanager
def celery_worker_process(
    redis_url: str,
    *,
    extra_env: dict[str, str] | None = None,
    concurrency: int = 1,
    queue: str | None = None,
) -> Iterator[RunningWorker]:
    """`celery_worker`, yielding the running worker (queue, node name, process) so fault tests
    can kill it, check it is still alive, and address it on a broker of their own. Workers
    given the same `queue` share its tasks (as N machines would); each has its own node name."""
    # A private queue's worker is named after it ("<queue>@host", which tests address); workers
    # sharing a given queue each get a node name of their own.
    node = f"{queue}-{uuid.uuid4().hex[:4]}" if queue else None
    queue = queue or f"test-{uuid.uuid4().hex[:8]}"
    node = node or queue
    pool = ["--pool=solo", "--concurrency=1"]
    if concurrency > 1:
        pool = ["--pool=prefork", f"--concurrency={concurrency}", "--prefetch-multiplier=1"]
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": redis_url,
        # Tasks the worker itself enqueues (chord members, callbacks) stay on its queue.
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        **(extra_env or {}),
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "retention",
            "--quiet",  # no banner
            "worker",
            *pool,
            "-Q",
            queue,
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            f"--hostname={node}@%h",
        ],
        cwd=REPO,
        env=env,
    )
    worker = RunningWorker(
        queue=queue,
        hostname=f"{node}@{os.uname().nodename}",
        process=process,
        broker_url=redis_url,
    )
    try:
        # Generous: on a loaded shared machine importing Django, pandas and scikit-learn alone
        # has taken 50 s. A bound for a hung start, not a measurement.
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the Celery worker exited with code {process.returncode}")
            if worker.answers_ping():
                break
        else:
            raise RuntimeError("the Celery worker did not answer a ping within 180 s")
        yield worker
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def email_worker(redis_url: str) -> Iterator[SmtpRecorder]:
    """A local SMTP server and a worker delivering to it (`smtp_worker_env`); tasks this test
    process enqueues meanwhile (a view's or the API's `delay`) go to the worker's queue instead
    of the project's default one. Yields the server's recorder of the messages it took."""
    with (
        smtp_server() as (recorder, port),
        celery_worker(redis_url, extra_env=smtp_worker_env(port)) as queue,
    ):
        previous = app.conf.task_default_queue
        app.conf.task_default_queue = queue
        try:
            yield recorder
        finally:
            app.conf.task_default_queue = previous
