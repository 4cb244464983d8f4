"""Settings of the retention service.

Every value that differs between a laptop and production is read from the environment
(see `.env.example`, which lists each variable). Development defaults are safe: an embedded
SQLite file, tasks run in-process, and a development secret that production refuses.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("RETENTION_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


# "development" (default) or "production". Production refuses unsafe defaults.
RETENTION_ENV = os.environ.get("RETENTION_ENV", "development")
if RETENTION_ENV not in {"development", "production"}:
    raise ImproperlyConfigured("RETENTION_ENV must be 'development' or 'production'.")
IS_PRODUCTION = RETENTION_ENV == "production"

DEV_SECRET_KEY = "dev-insecure-retention-secret-key-do-not-use-in-production"
SECRET_KEY = os.environ.get("SECRET_KEY", DEV_SECRET_KEY)
if IS_PRODUCTION and (SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured(
        "SECRET_KEY is the development default (or shorter than 32 characters); "
        "set a long random SECRET_KEY before running with RETENTION_ENV=production."
    )

DEBUG = env_bool("DEBUG", not IS_PRODUCTION)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if IS_PRODUCTION else ["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "customers",
    "scoring",
    "campaigns",
    # The project itself: its management command (retention_cycle) sits above the apps.
    "retention",
    # Admin login rate limiting (see "Admin login" below).
    "axes",
    # Content-Security-Policy header (see "HTTPS and content security policy" below).
    "csp",
    # Who changed what, with the values before and after (see "Audit" below).
    "auditlog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "retention.middleware.ApiBodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Records the logged-in user as the actor of each audit log entry.
    "auditlog.middleware.AuditlogMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "retention.urls"
WSGI_APPLICATION = "retention.wsgi.application"
ASGI_APPLICATION = "retention.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: DATABASE_URL (postgres://… in production); default an embedded SQLite file.
DEFAULT_SQLITE_PATH = VAR_DIR / "retention.sqlite3"
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{DEFAULT_SQLITE_PATH}"
# Connections are kept for 60 s (web requests, and a worker's tasks: CELERY_DB_REUSE_MAX), and
# checked before their first use in each request or task: one restarted or failed-over server
# costs a reconnection, not a failed task.
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # WAL lets the web process read while an import or scoring run writes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# Timestamps are stored in UTC; local time only where a person reads it or for quiet hours.
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))

# Redis: broker for Celery and the shared cache. Absent: tasks run in-process (same code path).
REDIS_URL = os.environ.get("REDIS_URL", "")

if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Celery (read by retention/celery.py with namespace CELERY_).
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or "cache+memory://"
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Queue for tasks without a route (tests give each real worker a private one).
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "celery")
CELERY_RESULT_EXPIRES = 24 * 3600
# Longest a task may run before it is killed; every long task works in chunks well below it.
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 30 * 60)
# A minute's warning before the hard limit (a tenth of it for limits under ten minutes, as the
# fault tests set): the soft limit raises inside the task, which then fails cleanly.
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - min(60, CELERY_TASK_TIME_LIMIT // 10)
# Redis redelivers an unacknowledged task after visibility_timeout. It must exceed every task
# time limit and retry countdown, or a long task is redelivered in a loop; 2 hours > 30 min.
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 2 * 3600)
if CELERY_VISIBILITY_TIMEOUT <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_VISIBILITY_TIMEOUT must exceed CELERY_TASK_TIME_LIMIT.")
# Surviving a Redis outage (docs/operations.md). A worker waits for Redis forever rather than
# exiting: at startup (retry_on_startup) and after a loss (max_retries None = no limit; the
# default 100 attempts, 2-30 s apart, end the worker after ~45 minutes). Socket timeouts turn a
# half-open connection (failover, NAT) into an error the retry loop handles instead of a hang;
# the health check pings idle connections every 10 s so a dead one is found before it is used.
CELERY_BROKER_CONNECTION_RETRY = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
_REDIS_SOCKET = {
    "socket_timeout": 10.0,  # > kombu's 1 s BRPOP wait: a live but idle queue never times out
    "socket_connect_timeout": 5.0,
    "socket_keepalive": True,
    "health_check_interval": 10,
    "retry_on_timeout": True,
}
# How often each worker looks for unacknowledged messages older than the visibility timeout
# and puts them back on their queue. kombu 5.7 looks every 10 s but scans Redis only on every
# tenth look (unacked_restore_throttle): a dead worker's task came back up to ~100 s after its
# timeout, which made the kill test fail on a slow machine. One scan a look (a ZRANGE on a small
# index) costs nothing worth saving.
CELERY_UNACKED_RESTORE_SECONDS = env_int("CELERY_UNACKED_RESTORE_SECONDS", 10)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "unacked_restore_interval": CELERY_UNACKED_RESTORE_SECONDS,
    "unacked_restore_throttle": 1,
    **_REDIS_SOCKET,
}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
CELERY_REDIS_SOCKET_TIMEOUT = _REDIS_SOCKET["socket_timeout"]
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = _REDIS_SOCKET["socket_connect_timeout"]
CELERY_REDIS_SOCKET_KEEPALIVE = True
CELERY_REDIS_RETRY_ON_TIMEOUT = True
CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL = _REDIS_SOCKET["health_check_interval"]
# Storing a result while Redis is away: 10 retries with jittered backoff (about 10 s in all),
# then give up on the result only — every task records its effect in PostgreSQL, and nothing
# waits on a result except tests and the shell.
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
CELERY_RESULT_BACKEND_MAX_RETRIES = 10
# acks_late/reject_on_worker_lost are set per task, not here: only tasks whose data makes a
# second run harmless take them (every delivery, dispatch, scoring-chunk and import task); a
# lost retraining or run-start is left to the next beat rather than repeated.
# Keep a task running when the broker connection drops (Celery 6 will cancel it by default):
# our tasks work in PostgreSQL, not Redis, so a relay finishes its chunk through the outage;
# cancelling it would kill it mid-send and leave that message "delivery unknown". A redelivered
# copy of the same task is harmless (the outbox's compare-and-set).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
# A prefork child is replaced after this many tasks: memory held by pandas/scikit-learn in a
# long scoring run is returned to the system (it does not apply to the solo pool).
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("CELERY_WORKER_MAX_TASKS_PER_CHILD", 100)
# Celery's Django fixup closes every database connection before and after each task unless
# this is set: each scoring chunk then paid for a new PostgreSQL backend (its start, cold
# catalogue caches, the page faults of mapping the shared buffers it reads). With it, the
# fixup closes them every this many tasks only, and retention.celery closes a connection past
# CONN_MAX_AGE (60 s) or broken at each task's start and end, as Django does around a request.
# 0: a new connection for every task, as before.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 100)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["customers.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["customers.authentication.HasApiScope"],
    "DEFAULT_THROTTLE_CLASSES": ["customers.authentication.ApiClientRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api_client": os.environ.get("API_THROTTLE_RATE", "600/min")},
    "DEFAULT_SCHEMA_CLASS": "common.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "common.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Retention service API",
    "DESCRIPTION": "Ingestion of customers, orders, events and consent; scores; responses.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI assets are served from the installed sidecar package, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
# Seconds an API client looked up by key stays cached in each server process: a revoked or
# rotated key, or changed scopes, made in another process take effect within this (0: no cache).
API_CLIENT_CACHE_SECONDS = env_int("API_CLIENT_CACHE_SECONDS", 10)
# Largest API request body accepted (bytes); 1,000 bulk items fit comfortably in 5 MB.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 5 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
# Most items one bulk request may carry.
API_MAX_BULK_ITEMS = 1000
# Routes bench/api_load.py's reference endpoint (/bench/reference-write). Off by default: only
# the benchmark's own server sets it.
RETENTION_BENCH_ENDPOINTS = env_bool("RETENTION_BENCH_ENDPOINTS", False)

# Consent when a customer has no consent record for a channel (the client's default).
CONSENT_DEFAULTS = {
    "email": env_bool("CONSENT_DEFAULT_EMAIL", True),
    "sms": env_bool("CONSENT_DEFAULT_SMS", False),
    "call": env_bool("CONSENT_DEFAULT_CALL", False),
    # Push: the operating system already asked the person before the app got a token.
    "push": env_bool("CONSENT_DEFAULT_PUSH", True),
    "in_app": env_bool("CONSENT_DEFAULT_IN_APP", True),
}

# Sources file read by the import stage of retention_cycle when --sources is not given.
RETENTION_SOURCES = os.environ.get("RETENTION_SOURCES", "")

# Behaviour label of automatic (re)training: churned = no order within this many days.
RETRAIN_HORIZON_DAYS = env_int("RETRAIN_HORIZON_DAYS", 90)

# Customers per scoring chunk (one task each): 50,000 keeps a chunk's orders to a few hundred
# MB even for heavy buyers and explanations to seconds; 1M customers fan out as 20 tasks.
SCORING_CHUNK_CUSTOMERS = env_int("SCORING_CHUNK_CUSTOMERS", 50_000)
# Keep each customer's order statistics between runs (scoring.models.OrderStatistics) and read
# orders only for the customers whose statistics are stale: PostgreSQL only (its triggers mark
# them); on SQLite every run reads every order. Off: every run reads every order everywhere.
SCORING_ORDER_STATISTICS = env_bool("SCORING_ORDER_STATISTICS", True)
# Customers a Celery worker process scores (nothing written) on a thread when it starts, so its
# first chunk or event rescore does not pay for loading the active model, checking its closed
# form and transforms, and the first large allocations (~0.2–0.35 s of a 1M run's first
# chunks, docs/scaling.md, ninth session). 0: no warm-up.
SCORING_WORKER_WARM_UP_CUSTOMERS = env_int("SCORING_WORKER_WARM_UP_CUSTOMERS", 2_000)
# Connections writing an in-process run's chunks at once (PostgreSQL; scoring.services.runs
# chunk_writes_behind): a chunk's write is mostly the database's work, and two connections
# keep both cores busy while Python computes the next chunk.
SCORING_WRITE_CONNECTIONS = env_int("SCORING_WRITE_CONNECTIONS", 2)
# BLAS and OpenMP threads one scoring computation may use (common/compute.py): scoring runs a
# process per core already (the Celery pool; in-process, beside its database work), and the
# libraries' default of a thread per core made two chunks at once 1.3x slower each
# (docs/scaling.md, tenth session). 0: the libraries' defaults.
SCORING_COMPUTE_THREADS = env_int("SCORING_COMPUTE_THREADS", 1)

# The nightly cycle as one run (retention/cycle.py, docs/scaling.md). One cycle at a time: a
# database lock renewed after every chunk and stage; a run whose processes died stops renewing
# it and it frees itself after this many seconds. It must exceed the longest stretch without a
# renewal (a task's time limit: one chunk, a training, an import), or a live run loses it.
RETENTION_CYCLE_LOCK_SECONDS = env_int("RETENTION_CYCLE_LOCK_SECONDS", CELERY_TASK_TIME_LIMIT + 300)
if RETENTION_CYCLE_LOCK_SECONDS <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("RETENTION_CYCLE_LOCK_SECONDS must exceed CELERY_TASK_TIME_LIMIT.")
# Queues of the cycle's chunk tasks on workers (empty: the default queue). Scoring and dispatch
# can run on workers of their own: `celery -A retention worker -Q scoring` on the big machines.
CYCLE_SCORING_QUEUE = os.environ.get("CYCLE_SCORING_QUEUE", "")
CYCLE_DISPATCH_QUEUE = os.environ.get("CYCLE_DISPATCH_QUEUE", "")
# Relay tasks the cycle's relay stage runs at once (the outbox's leases keep them apart):
# about one per worker process.
CYCLE_RELAY_TASKS = env_int("CYCLE_RELAY_TASKS", 2)
# Event-triggered rescoring (docs/realtime.md). Events of a kind marked "rescore" in the admin
# (customers.EventKind) rescore their customer within seconds; events for one customer within
# REALTIME_DEBOUNCE_MS of the first give one rescore (the task waits that long, then reads
# everything that arrived). Only events at most REALTIME_MAX_EVENT_AGE seconds old trigger
# anything: an import of old history is left to the nightly run.
REALTIME_DEBOUNCE_MS = env_int("REALTIME_DEBOUNCE_MS", 500)
# Most customers one rescore task scores together (one feature pass, one predict).
REALTIME_BATCH = env_int("REALTIME_BATCH", 50)
REALTIME_MAX_EVENT_AGE = env_int("REALTIME_MAX_EVENT_AGE", 24 * 3600)
# Queue of the event-triggered tasks (the rescore drain and the triggered relay); empty: the
# default queue. Give it a worker of its own (`-Q realtime`) so that a nightly cycle's chunks,
# each tens of seconds long, never stand between an event and its rescore (docs/realtime.md).
REALTIME_QUEUE = os.environ.get("REALTIME_QUEUE", "")

# Directory where trained model artifacts are written.
MODEL_ARTIFACT_DIR = Path(os.environ.get("MODEL_ARTIFACT_DIR", VAR_DIR / "models"))

# Emails and phone numbers are masked in every line (common/logmask.py): the filter sits on
# every handler. Django's own loggers are routed to root's handler, replacing the unfiltered
# handlers of Django's default configuration (its console and mail_admins ones);
# tests/common/test_logmask.py fails if any other handler shows up.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_personal_data": {"()": "common.logmask.PersonalDataMaskFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["mask_personal_data"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
    "loggers": {
        "django": {"handlers": [], "propagate": True},
        "django.server": {"handlers": [], "propagate": True},
        # redis-py gives this logger an unfiltered stderr handler of its own on first use,
        # unless it already exists: configured here, its lines go through root's handler.
        "push_response": {"handlers": [], "propagate": True},
    },
}

# --- Admin login ---
# django-axes: after ADMIN_LOGIN_FAILURE_LIMIT wrong passwords for one username from one IP
# address, that pair is locked out for ADMIN_LOGIN_COOLOFF_MINUTES (each new try while locked
# restarts the wait); `python manage.py axes_reset` lifts every lockout. The axes backend goes
# first: it refuses a locked-out pair before the password is even checked. It needs the
# request, so code (and tests) must call authenticate(request, ...) or use force_login.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("ADMIN_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("ADMIN_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "retention.admin_login.lockout_response"
# Whom the lockout page tells a locked-out person to ask.
ADMIN_LOGIN_CONTACT = os.environ.get("ADMIN_LOGIN_CONTACT", "an administrator of this service")

# --- Audit ---
# django-auditlog records every create/update/delete of the configuration that decides who is
# contacted and how (campaigns, rules, offers, templates, risk tiers), of API clients and of
# model status, with the actor and each changed field's old and new value; the admin lists them
# under "Auditlog" > "Log entries". Custom admin actions (dispatch now, promote, roll back,
# rotate keys) are also written to the admin's own History of the object they act on.
AUDITLOG_INCLUDE_TRACKING_MODELS = (
    "campaigns.Campaign",
    "campaigns.Rule",
    "campaigns.Offer",
    "campaigns.MessageTemplate",
    "scoring.RiskTier",
    # The key hash is a secret; last use is touched by the API itself, not by a person.
    {"model": "customers.ApiClient", "exclude_fields": ["key_hash", "last_used_at"]},
    # Only the status of a model changes after training.
    {"model": "scoring.ChurnModel", "include_fields": ["status", "activated_at"]},
)

# --- HTTPS and content security policy ---
# Production is HTTPS only (behind a proxy that sets X-Forwarded-Proto); development serves
# plain HTTP on localhost, so none of this applies there. `manage.py check --deploy` is clean
# with these defaults (tests/retention/test_deploy_check.py).
if IS_PRODUCTION:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # One year, the value browsers' preload lists ask for; lower it while first trying HTTPS.
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Preloading binds the whole registered domain to HTTPS for months, beyond this
        # service: the operator opts in (SECURE_HSTS_PRELOAD=1), so its warning is not noise.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

# django-csp, in every environment so development shows violations too. Everything is served
# from this host (the Swagger UI from drf-spectacular-sidecar); no inline script anywhere (the
# Swagger UI's init script is a separate request: SpectacularSwaggerSplitView). Inline styles
# stay allowed: the Swagger UI sets them at runtime and the admin uses style attributes.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# --- Campaigns ---
# Channels, delivery rates, frequency caps and quiet hours of the campaign engine (campaigns/).


def env_cap(name: str, default: str) -> tuple[int, int] | None:
    """A frequency cap "N/D" (at most N contacts in D days); "" or "off" disables it."""
    value = os.environ.get(name, default).strip().lower()
    if value in ("", "off", "none"):
        return None
    most, _, days = value.partition("/")
    return int(most), int(days)


# Absolute base of links in messages (one-click unsubscribe).
PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

# Email: Django's email framework. Short names or a dotted backend path; development writes
# each message as a file to var/outbox/email (the "outbox"), production uses SMTP.
_EMAIL_BACKENDS = {
    "smtp": "django.core.mail.backends.smtp.EmailBackend",
    "file": "django.core.mail.backends.filebased.EmailBackend",
    "console": "django.core.mail.backends.console.EmailBackend",
    "locmem": "django.core.mail.backends.locmem.EmailBackend",
}
_email_backend = os.environ.get("EMAIL_BACKEND", "smtp" if IS_PRODUCTION else "file")
EMAIL_BACKEND = _EMAIL_BACKENDS.get(_email_backend, _email_backend)
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH", str(VAR_DIR / "outbox" / "email"))
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 30)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Retention <noreply@localhost>")
EMAIL_MESSAGE_ID_DOMAIN = os.environ.get("EMAIL_MESSAGE_ID_DOMAIN", "retention.local")

# SMS: console | file | webhook | twilio (production refuses console and file).
SMS_BACKEND = os.environ.get("SMS_BACKEND", "console")
SMS_FROM = os.environ.get("SMS_FROM", "")
SMS_FILE_PATH = os.environ.get("SMS_FILE_PATH", str(VAR_DIR / "outbox" / "sms.jsonl"))
SMS_WEBHOOK_URL = os.environ.get("SMS_WEBHOOK_URL", "")
SMS_WEBHOOK_SECRET = os.environ.get("SMS_WEBHOOK_SECRET", "")
SMS_TIMEOUT = env_int("SMS_TIMEOUT", 10)
TWILIO_ACCOUNT_SID = os.environ.get("TWILIO_ACCOUNT_SID", "")
TWILIO_AUTH_TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "")

# --- Push notifications and in-app messages (docs/channels.md) ---
# A customer's active devices beyond this are retired, oldest (last seen) first.
PUSH_MAX_DEVICES_PER_CUSTOMER = env_int("PUSH_MAX_DEVICES_PER_CUSTOMER", 10)
# Web Push (RFC 8030/8291/8292) through pywebpush: VAPID key pair (`manage.py vapid_keys`
# prints one), the private key as its base64url raw 32 bytes; the subject is a mailto: or https:
# URL push services may use to reach the sender.
WEBPUSH_VAPID_PRIVATE_KEY = os.environ.get("WEBPUSH_VAPID_PRIVATE_KEY", "")
WEBPUSH_VAPID_PUBLIC_KEY = os.environ.get("WEBPUSH_VAPID_PUBLIC_KEY", "")
WEBPUSH_VAPID_SUBJECT = os.environ.get("WEBPUSH_VAPID_SUBJECT", "mailto:admin@localhost")
# Seconds a push message waits at the push service for an offline device (TTL header).
WEBPUSH_TTL = env_int("WEBPUSH_TTL", 86_400)
# Firebase Cloud Messaging HTTP v1 for the Android and iOS apps: a service-account JSON file;
# the project id defaults to the file's. The token and send URLs are Google's unless set (tests
# and staging point them at a local server); the send URL has {project_id} in it.
FCM_SERVICE_ACCOUNT_FILE = os.environ.get("FCM_SERVICE_ACCOUNT_FILE", "")
FCM_PROJECT_ID = os.environ.get("FCM_PROJECT_ID", "")
FCM_TOKEN_URL = os.environ.get("FCM_TOKEN_URL", "")
FCM_SEND_URL = os.environ.get(
    "FCM_SEND_URL", "https://fcm.googleapis.com/v1/projects/{project_id}/messages:send"
)
# Web Push endpoints must be https:// (browsers only make such); tests and local push services
# may allow http:// with this (DEBUG allows it too).
PUSH_ALLOW_HTTP = env_bool("PUSH_ALLOW_HTTP", False)
# Seconds one HTTP request to a push service may take.
PUSH_TIMEOUT = env_int("PUSH_TIMEOUT", 10)
# An in-app message stays in the customer's inbox this many days (unless a coupon expires first).
IN_APP_MESSAGE_DAYS = env_int("IN_APP_MESSAGE_DAYS", 14)

# --- Production delivery backends ---
# A console/file/locmem backend in production "sends" to a log or a folder and marks the
# message sent: real customers silently get nothing. Production refuses them unless the
# operator says otherwise (a staging copy that must never reach real people).
ALLOW_TEST_BACKENDS_IN_PRODUCTION = env_bool("ALLOW_TEST_BACKENDS_IN_PRODUCTION", False)
PRODUCTION_SMS_BACKENDS = ("webhook", "twilio")
TEST_EMAIL_BACKENDS = {
    _EMAIL_BACKENDS["file"],
    _EMAIL_BACKENDS["console"],
    _EMAIL_BACKENDS["locmem"],
    "django.core.mail.backends.dummy.EmailBackend",
}
if IS_PRODUCTION and not ALLOW_TEST_BACKENDS_IN_PRODUCTION:
    if SMS_BACKEND not in PRODUCTION_SMS_BACKENDS:
        raise ImproperlyConfigured(
            f"SMS_BACKEND={SMS_BACKEND!r} does not send messages; with RETENTION_ENV=production "
            f"set SMS_BACKEND to one of: {', '.join(PRODUCTION_SMS_BACKENDS)} "
            "(ALLOW_TEST_BACKENDS_IN_PRODUCTION=1 overrides this, for staging only)."
        )
    if EMAIL_BACKEND in TEST_EMAIL_BACKENDS:
        raise ImproperlyConfigured(
            f"EMAIL_BACKEND={_email_backend!r} does not send messages; with "
            "RETENTION_ENV=production set EMAIL_BACKEND to smtp (the default) or the dotted "
            "path of a real backend (ALLOW_TEST_BACKENDS_IN_PRODUCTION=1 overrides this, "
            "for staging only)."
        )

# Most messages sent per channel per minute, all relay processes together (a database
# counter: campaigns/services/rate.py). Rows over the rate stay pending for the next minute.
CAMPAIGN_RATE_PER_MINUTE = {
    "email": env_int("CAMPAIGN_RATE_EMAIL", 600),
    "sms": env_int("CAMPAIGN_RATE_SMS", 60),
    "coupon": env_int("CAMPAIGN_RATE_COUPON", 10_000),
    "callback": env_int("CAMPAIGN_RATE_CALLBACK", 1_000),
    "push": env_int("CAMPAIGN_RATE_PUSH", 6_000),
    "in_app": env_int("CAMPAIGN_RATE_IN_APP", 10_000),
}
# Frequency caps across all campaigns, per channel: at most N contacts in D days.
CAMPAIGN_FREQUENCY_CAPS = {
    channel: cap
    for channel, cap in {
        "email": env_cap("CAMPAIGN_CAP_EMAIL", "3/7"),
        "sms": env_cap("CAMPAIGN_CAP_SMS", "2/7"),
        "callback": env_cap("CAMPAIGN_CAP_CALLBACK", "1/30"),
        "coupon": env_cap("CAMPAIGN_CAP_COUPON", "off"),
        "push": env_cap("CAMPAIGN_CAP_PUSH", "3/7"),
        "in_app": env_cap("CAMPAIGN_CAP_IN_APP", "5/7"),
    }.items()
    if cap is not None
}
# Quiet hours in the customer's local time, "START-END" (24 h clock); delivery waits until END.
_quiet = os.environ.get("CAMPAIGN_QUIET_HOURS", "21-8").partition("-")
CAMPAIGN_QUIET_HOURS = (int(_quiet[0]), int(_quiet[2]))
CAMPAIGN_QUIET_HOURS_CHANNELS = env_list(
    "CAMPAIGN_QUIET_HOURS_CHANNELS", ["email", "sms", "callback", "push"]
)
# Transient delivery failures are retried this many times, backoff doubling from the base.
CAMPAIGN_RELAY_MAX_ATTEMPTS = env_int("CAMPAIGN_RELAY_MAX_ATTEMPTS", 5)
CAMPAIGN_RELAY_BACKOFF_SECONDS = env_int("CAMPAIGN_RELAY_BACKOFF_SECONDS", 60)
# A relay's claim on a chunk lasts this long unless renewed: a worker killed mid-chunk holds its
# unsent rows back at most this long (campaigns/services/relay.py explains the trade-off).
CAMPAIGN_RELAY_LEASE_SECONDS = env_int("CAMPAIGN_RELAY_LEASE_SECONDS", 180)
# A row left "sending" this long by a lost worker is recorded "delivery unknown" (never resent).
# It must exceed the longest live send (5 SMTP steps x EMAIL_TIMEOUT); tests shorten both.
CAMPAIGN_RELAY_SENDING_STALE_SECONDS = env_int("CAMPAIGN_RELAY_SENDING_STALE_SECONDS", 300)
if CAMPAIGN_RELAY_LEASE_SECONDS < 2 or CAMPAIGN_RELAY_SENDING_STALE_SECONDS < 2:
    raise ImproperlyConfigured(
        "CAMPAIGN_RELAY_LEASE_SECONDS and CAMPAIGN_RELAY_SENDING_STALE_SECONDS must be at least 2."
    )
# HTTP channels (push, webhook SMS) keep this many sends in flight per relay process (threads
# over one pooled keep-alive session): a provider's latency, not our CPU, bounds one-at-a-time
# sending. A worker lost mid-round may leave this many rows "delivery unknown" (never resent).
CAMPAIGN_RELAY_HTTP_THREADS = env_int("CAMPAIGN_RELAY_HTTP_THREADS", 8)
# Email: SMTP connections per relay process, one message in flight on each. One by default, so a
# worker lost mid-send leaves one row "delivery unknown"; more overlap a remote server's latency.
CAMPAIGN_RELAY_SMTP_CONNECTIONS = env_int("CAMPAIGN_RELAY_SMTP_CONNECTIONS", 1)
# Messages per relay round: one commit records a round's answers and passes the next round
# through the at-most-once gate. At least the channel's concurrency (the default: one email per
# round on one connection). A larger round saves a commit per message — for nights of 100,000+
# messages — at the price of up to this many rows left "delivery unknown" (never resent) when a
# worker dies mid-round (docs/scaling.md, "The relay at volume").
CAMPAIGN_RELAY_ROUND_MESSAGES = env_int("CAMPAIGN_RELAY_ROUND_MESSAGES", 1)
# Gate and queue the next round while this one is on the wire, so the sending threads never wait
# for the round's commit: for nights of 100,000+ messages, at the price of up to two rounds left
# "delivery unknown" (never resent) when a worker dies mid-send (docs/scaling.md).
CAMPAIGN_RELAY_OVERLAP_ROUNDS = env_bool("CAMPAIGN_RELAY_OVERLAP_ROUNDS", False)
# Interventions a relay claims, loads and renders at once (a chunk). Every chunk pays fixed
# costs — the claim, the queries for the rows' customers, consents, reasons and products, the
# channel's connections opened and closed — so larger chunks relay faster (1,000 instead of 200:
# 6–8% more emails/s at 1M customers, docs/scaling.md); a worker lost mid-chunk leaves the rest
# of its chunk waiting out the lease (CAMPAIGN_RELAY_LEASE_SECONDS) before another relay takes
# them.
CAMPAIGN_RELAY_CHUNK = env_int("CAMPAIGN_RELAY_CHUNK", 200)
if CAMPAIGN_RELAY_CHUNK < 1:
    raise ImproperlyConfigured("CAMPAIGN_RELAY_CHUNK must be at least 1.")
# Staff in this group receive callback tasks round-robin.
CAMPAIGN_AGENTS_GROUP = os.environ.get("CAMPAIGN_AGENTS_GROUP", "agents")
# A callback the agent marks "no answer" is tried again CALLBACK_RETRY_SPACING_HOURS later, up
# to CALLBACK_RETRY_ATTEMPTS calls in all; the last unanswered call closes it as "no answer".
# 3 calls 4 hours apart: morning, afternoon and evening of one day reach most people at home.
CALLBACK_RETRY_ATTEMPTS = env_int("CALLBACK_RETRY_ATTEMPTS", 3)
CALLBACK_RETRY_SPACING_HOURS = env_int("CALLBACK_RETRY_SPACING_HOURS", 4)

# --- Uplift ---
# Measurement of campaigns (campaigns/measurement.py) and the responses API.

# Program-wide holdout: this share (percent) of ALL customers is never contacted by any
# campaign (a sha256 draw with GLOBAL_CONTROL_SALT); the program report compares it with
# everyone else. 5%: enough customers for a program-level estimate, little revenue at stake.
# Never change the salt once campaigns have run (it would reshuffle the group).
GLOBAL_CONTROL_PERCENT = float(os.environ.get("GLOBAL_CONTROL_PERCENT", "5"))
GLOBAL_CONTROL_SALT = os.environ.get("GLOBAL_CONTROL_SALT", "retention-global-control")

# Uplift models (docs/uplift.md): bootstrap resamples behind each validation interval, and the
# fewest finished rows the control arm (and the actions together) need before a model is fitted.
UPLIFT_BOOTSTRAP_RESAMPLES = int(os.environ.get("UPLIFT_BOOTSTRAP_RESAMPLES", "200"))
UPLIFT_MIN_ROWS_PER_ARM = int(os.environ.get("UPLIFT_MIN_ROWS_PER_ARM", "20"))
# The currency of every amount (order amounts, offer values and costs, message costs): an ISO
# 4217 code, shown beside each amount in the admin, the API (`currency`) and the CSV export.
# Amounts are never converted: set it to the currency the shop's orders are in.
RETENTION_CURRENCY = os.environ.get("RETENTION_CURRENCY", "EUR").strip().upper()
if len(RETENTION_CURRENCY) != 3 or not RETENTION_CURRENCY.isalpha():
    raise ImproperlyConfigured(
        f"RETENTION_CURRENCY must be a three-letter ISO 4217 code such as EUR or GBP; "
        f"got {RETENTION_CURRENCY!r}."
    )
# Product recommendations in messages (`recommended_products`, refreshed by
# `manage.py recommend_products`): how many a message gets, and the link of a product, with
# {external_id} standing for its id in the shop (empty: no link).
RECOMMENDATIONS_PER_MESSAGE = int(os.environ.get("RECOMMENDATIONS_PER_MESSAGE", "3"))
PRODUCT_URL_TEMPLATE = os.environ.get("PRODUCT_URL_TEMPLATE", "")
# Cost of one message actually sent, per channel (in RETENTION_CURRENCY), for cost and ROI.
CAMPAIGN_MESSAGE_COST = {
    "email": float(os.environ.get("CAMPAIGN_MESSAGE_COST_EMAIL", "0.002")),
    "sms": float(os.environ.get("CAMPAIGN_MESSAGE_COST_SMS", "0.05")),
    "coupon": float(os.environ.get("CAMPAIGN_MESSAGE_COST_COUPON", "0")),
    "callback": float(os.environ.get("CAMPAIGN_MESSAGE_COST_CALLBACK", "2.50")),
    # Web Push and FCM charge nothing per message; the inbox is our own table.
    "push": float(os.environ.get("CAMPAIGN_MESSAGE_COST_PUSH", "0")),
    "in_app": float(os.environ.get("CAMPAIGN_MESSAGE_COST_IN_APP", "0")),
}
# Shared secrets of the inbound provider webhooks (email events, SMS delivery status); a
# webhook whose secret is empty is refused. Signature: see docs/uplift.md.
EMAIL_EVENTS_WEBHOOK_SECRET = os.environ.get("EMAIL_EVENTS_WEBHOOK_SECRET", "")
SMS_STATUS_WEBHOOK_SECRET = os.environ.get("SMS_STATUS_WEBHOOK_SECRET", "")
# Oldest webhook timestamp accepted (seconds): a captured request cannot be replayed later.
WEBHOOK_TOLERANCE_SECONDS = env_int("WEBHOOK_TOLERANCE_SECONDS", 300)

# --- Issue 12 (API input): consent clock skew ---
# A consent statement may claim a `recorded_at` at most this many seconds after we receive it
# (client clocks drift); further in the future is refused, and a claimed time is never kept
# later than its arrival, so a future date cannot outrank a later unsubscribe.
CONSENT_CLOCK_SKEW_SECONDS = env_int("CONSENT_CLOCK_SKEW_SECONDS", 300)
# A body nested deeper than the JSON parser can follow is a 400, not a RecursionError (500).
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = ["common.parsers.JsonParser"]
