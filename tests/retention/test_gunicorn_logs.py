"""The web server's own log lines are masked too: gunicorn's access log carries request paths,
and a customer's external id in a path can be an email address."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.worker import REPO


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, deadline: float) -> int:
    while True:
        try:
            return int(urllib.request.urlopen(url, timeout=2).status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_gunicorn_masks_emails_in_its_access_log(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "retention.wsgi"),
                *(f"--bind=127.0.0.1:{port}", "--workers=1", "--access-logfile=-"),
            ],
            cwd=REPO,  # where gunicorn.conf.py is read from, as in the Procfile
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}/api/v1/customers/jane.doe@example.com"
            assert _get(url, time.monotonic() + 60) == 401
            deadline = time.monotonic() + 10
            while "/api/v1/customers/" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.2)
        finally:
            server.terminate()
            server.wait(timeout=20)
    written = log.read_text()
    assert "GET /api/v1/customers/j***@example.com" in written
    assert "jane.doe@example.com" not in written
