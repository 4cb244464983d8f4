"""The Celery application, configured from Django settings (keys prefixed CELERY_).

With no REDIS_URL, tasks run eagerly in-process: the same task code path as production.
"""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retention.settings")

app = Celery("retention")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.beat_schedule = {}
