"""Gunicorn reads this file from the working directory (the Procfile's `web`): its own log lines
(gunicorn.error, and gunicorn.access when an access log is on, whose lines carry URLs with
customer ids) get the email and phone mask the app's lines have (common/logmask.py)."""

import logging
from typing import Any


def _mask_gunicorn_logs() -> None:
    from common.logmask import handlers_mask

    for name in ("gunicorn.error", "gunicorn.access"):
        handlers_mask(logging.getLogger(name))


def when_ready(server: Any) -> None:
    """The arbiter, once its logging is set up (its own lines: workers booting and exiting)."""
    _mask_gunicorn_logs()


def post_fork(server: Any, worker: Any) -> None:
    """Each worker (also those a reload starts), with the handlers it inherited."""
    _mask_gunicorn_logs()
