"""A local SMTP server for the benchmarks, in a process of its own, counting what it accepts
and keeping nothing (the tests' recorder parses and keeps every message, which at 100,000+
messages costs the bench process more than the relay it measures).

Two servers, both speaking real SMTP over TCP:

- `smtp-sink`, Postfix's SMTP test server (C; Debian package `postfix`, whose daemon need not
  run: `make bench-smtp-sink` installs it without configuring or starting a mail system). Made
  "to measure client performance, not protocol compliance" (its manual): it spends a few
  microseconds a message, so the relay's figures are the relay's own. The default when
  installed.
- `aiosmtpd` (Python; in requirements-dev.txt): always available, but on the bench's 2 cores it
  is the relay's busiest process (60–65% of a core at ~900 emails/s, a third of it parsing
  MAIL/RCPT addresses), so it takes CPU the relay would otherwise have. In production the mail
  server is another machine: its CPU is not the relay's to share.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

SERVERS = ("auto", "smtp-sink", "aiosmtpd")
_SMTP_SINK_PATHS = ("smtp-sink", "/usr/sbin/smtp-sink")


def _smtp_sink_path() -> str | None:
    return next(filter(None, map(shutil.which, _SMTP_SINK_PATHS)), None)


def smtp_server_choice(server: str) -> str:
    """The server `auto` means here: smtp-sink when installed, else aiosmtpd."""
    if server == "auto":
        return "smtp-sink" if _smtp_sink_path() else "aiosmtpd"
    if server == "smtp-sink" and not _smtp_sink_path():
        raise SystemExit(
            "smtp-sink is not installed: `make bench-smtp-sink` (Debian's postfix package, its "
            "daemon not started), or --smtp-server aiosmtpd"
        )
    return server


def smtp_server_note(server: str) -> str:
    """What to say beside figures measured with `server`: aiosmtpd is Python on the relay's
    own cores (60–65 % of a core at ~900 emails/s; a 1M-customer cycle's relay 306 s against
    127 s with smtp-sink on one 2-core machine), so its figures are not the documented ones."""
    if server != "aiosmtpd":
        return ""
    return (
        " — aiosmtpd runs on the same cores as the relay and slows it (2.4x on one 2-core "
        "machine); `make bench-smtp-sink` installs the server docs/scaling.md's figures used"
    )


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


@dataclass
class _Count:
    """The messages smtp-sink reports accepted (its `-c` counter: "… mesg=N" after each ".")."""

    value: int = 0


def _follow(stream: Any, count: _Count) -> None:
    pattern = re.compile(rb"mesg=(\d+)")
    while chunk := stream.read1(65536):
        found = pattern.findall(chunk)
        if found:
            count.value = int(found[-1])


@contextmanager
def _smtp_sink_process(port: int) -> Iterator[_Count]:
    command = [str(_smtp_sink_path()), "-c"]
    if os.geteuid() == 0:  # it refuses to run as root without a user to switch to
        command += ["-u", "nobody"]
    process = subprocess.Popen(
        [*command, f"127.0.0.1:{port}", "256"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    count = _Count()
    follower = threading.Thread(target=_follow, args=(process.stdout, count), daemon=True)
    follower.start()
    try:
        _wait_listening(port, process)
        yield count
    finally:
        process.terminate()
        process.wait(10)
        follower.join(10)


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise SystemExit(f"smtp-sink stopped: {error.strip()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the local SMTP server did not start")


@contextmanager
def smtp_sink(server: str = "auto") -> Iterator[tuple[Any, int]]:
    """(a counter whose `.value` is the number of messages accepted, the port) of `server`
    (SERVERS; `smtp_server_choice` says what `auto` picks)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.campaigns.servers import free_port

    port = free_port()
    if smtp_server_choice(server) == "smtp-sink":
        with _smtp_sink_process(port) as count:
            yield count, port
        return
    context = multiprocessing.get_context("spawn")
    accepted = context.Value("q", 0)
    ready = context.Event()
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
