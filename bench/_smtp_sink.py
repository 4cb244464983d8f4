"""A local SMTP server for the benchmarks, in its own process: aiosmtpd speaking real SMTP,
counting what it accepts and keeping nothing (the tests' recorder parses and keeps every
message, which at 100,000+ messages costs the bench process more than the relay it measures)."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _serve(port: int, accepted: Any, ready: Any) -> None:
    from aiosmtpd.controller import Controller

    class Counting:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with accepted.get_lock():
                accepted.value += 1
            return "250 Message accepted for delivery"

    controller = Controller(Counting(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    while True:
        time.sleep(3600)


@contextmanager
def smtp_sink() -> Iterator[tuple[Any, int]]:
    """(a counter whose `.value` is the number of messages accepted, the port)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.campaigns.servers import free_port

    context = multiprocessing.get_context("spawn")
    accepted = context.Value("q", 0)
    ready = context.Event()
    port = free_port()
    process = context.Process(target=_serve, args=(port, accepted, ready), daemon=True)
    process.start()
    if not ready.wait(60):
        process.terminate()
        raise SystemExit("the local SMTP server did not start")
    try:
        yield accepted, port
    finally:
        process.terminate()
        process.join(10)
