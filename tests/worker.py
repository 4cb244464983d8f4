"""Start a real Celery worker for integration tests, on its own queue and the test database."""

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

from django.db import connection

from retention.celery import app as celery_app

REPO = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """The URL of the database this test run uses (pytest-django's test_… database)."""
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@dataclass(frozen=True)
class RunningWorker:
    queue: str
    hostname: str  # the node name a control command addresses
    process: subprocess.Popen[bytes]
    broker_url: str

    def answers_ping(self, timeout: float = 1.0) -> bool:
        with celery_app.connection_for_write(self.broker_url) as connection:
            replies = celery_app.control.ping(
                destination=[self.hostname], timeout=timeout, connection=connection
            )
        return bool(replies)

    def pid(self) -> int:
        """The pid of the process that runs tasks (the worker itself with the solo pool)."""
        with celery_app.connection_for_write(self.broker_url) as connection:
            inspect = celery_app.control.inspect(
                destination=[self.hostname], timeout=5, connection=connection
            )
            stats = inspect.stats() or {}
            return int(stats[self.hostname]["pid"])


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
    redis_url: str, *, extra_env: dict[str, str] | None = None, concurrency: int = 1
) -> Iterator[RunningWorker]:
    """`celery_worker`, yielding the running worker (queue, node name, process) so fault tests
    can kill it, check it is still alive, and address it on a broker of their own."""
    queue = f"test-{uuid.uuid4().hex[:8]}"
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
            f"--hostname={queue}@%h",
        ],
        cwd=REPO,
        env=env,
    )
    worker = RunningWorker(
        queue=queue,
        hostname=f"{queue}@{os.uname().nodename}",
        process=process,
        broker_url=redis_url,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the Celery worker exited with code {process.returncode}")
            if worker.answers_ping():
                break
        else:
            raise RuntimeError("the Celery worker did not answer a ping within 60 s")
        yield worker
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
