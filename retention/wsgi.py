"""WSGI entry point (gunicorn retention.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "retention.settings")
application = get_wsgi_application()
