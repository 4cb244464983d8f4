"""A private redis-server for fault tests: started as a subprocess on a free port, and stopped and
started again on the same port, so a test can take the broker away under a running worker
without touching the Redis every other test shares."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from tests.campaigns.servers import free_port

NO_PERSISTENCE = ["--save", "", "--appendonly", "no", "--loglevel", "warning"]


class RedisServer:
    """One redis-server without persistence (`--save "" --appendonly no`): a restart comes back
    empty, the worst case for the broker — every queued and unacknowledged task is gone."""

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=2)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", *NO_PERSISTENCE],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within 10 s")

    def stop(self) -> None:
        """SIGTERM: redis-server closes every client connection and exits (no save)."""
        if self.process is None:
            return
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process = None


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A running private redis-server, stopped at the end whether or not the test stopped it."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server")
    server = RedisServer(binary, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
