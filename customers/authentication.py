"""API key authentication, per-view scopes and per-client throttling for the REST API."""

from __future__ import annotations

import hmac
import logging
import math
import time
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from redis.exceptions import RedisError
from rest_framework import authentication, exceptions, permissions, throttling
from rest_framework.request import Request

from customers.models import ApiClient
from customers.services import API_KEY_PREFIX, api_key_hash

logger = logging.getLogger(__name__)

# What a cache backend raises when its server is unreachable.
CACHE_ERRORS = (RedisError, OSError)


# API clients found by key prefix, per process: {prefix: (client, monotonic expiry)}. A hot
# path (every request) that would otherwise read the same row each time. An entry lives
# API_CLIENT_CACHE_SECONDS; a change saved in this process drops it at once (signals below),
# a change made in another process (a revoked or rotated key, new scopes) is seen within the TTL.
_clients: dict[str, tuple[ApiClient, float]] = {}
_CLIENTS_MAX = 1024  # distinct live keys per process; beyond it the cache starts afresh


def _client_for_prefix(prefix: str) -> ApiClient | None:
    ttl = settings.API_CLIENT_CACHE_SECONDS
    now = time.monotonic()
    cached = _clients.get(prefix)
    if cached is not None and cached[1] > now:
        return cached[0]
    client = ApiClient.objects.filter(key_prefix=prefix, is_active=True).first()
    if client is not None and ttl > 0:  # unknown prefixes are not kept: no memory for guesses
        if len(_clients) >= _CLIENTS_MAX:
            _clients.clear()
        _clients[prefix] = (client, now + ttl)
    return client


@receiver([post_save, post_delete], sender=ApiClient, dispatch_uid="api-client-cache-drop")
def _api_client_changed(sender: Any, instance: ApiClient, **kwargs: Any) -> None:
    _clients.pop(instance.key_prefix, None)
    for prefix, (client, _expiry) in list(_clients.items()):
        if client.pk == instance.pk:  # a rotated key: the old prefix goes too
            _clients.pop(prefix, None)


def api_client_cache_clear() -> None:
    """Forget every cached API client of this process (tests; after a bulk update)."""
    _clients.clear()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Api-Key rk_<prefix>_<secret>` (or `Bearer <key>`)."""

    keywords = ("api-key", "bearer")

    def authenticate(self, request: Request) -> tuple[ApiClient, None] | None:
        header = request.headers.get("Authorization", "")
        keyword, _, key = header.partition(" ")
        if keyword.lower() not in self.keywords or not key.strip():
            return None
        key = key.strip()
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != API_KEY_PREFIX:
            raise exceptions.AuthenticationFailed("Malformed API key.")
        client = _client_for_prefix(parts[1])
        if client is None or not hmac.compare_digest(client.key_hash, api_key_hash(key)):
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        now = timezone.now()
        # Touch last_used_at at most once a minute to keep hot paths write-free.
        if client.last_used_at is None or (now - client.last_used_at).total_seconds() > 60:
            ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
            client.last_used_at = now
        return client, None

    def authenticate_header(self, request: Request) -> str:
        return 'Api-Key realm="api"'


class HasApiScope(permissions.BasePermission):
    """The client must be authenticated and hold the view's `required_scopes[method]`."""

    message = "This API client lacks the scope this endpoint needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        client = request.user
        if not isinstance(client, ApiClient):
            raise exceptions.NotAuthenticated()
        scopes = getattr(view, "required_scopes", {})
        if request.method == "OPTIONS":  # DRF's description of the view: any of its scopes
            return any(client.has_scope(scope) for scope in scopes.values())
        # HEAD is GET without the body (Django routes it to `get`): it needs GET's scope.
        required = scopes.get("GET" if request.method == "HEAD" else request.method)
        if required is None:
            if not hasattr(view, (request.method or "").lower()):
                raise exceptions.MethodNotAllowed(request.method or "")  # 405, not 403
            return False  # a view that declares no scope for a method is closed
        if not client.has_scope(required):
            self.message = f"This API client lacks the '{required}' scope."
            return False
        return True


def _redis_client(backend: Any) -> Any | None:
    """The redis-py client under Django's Redis cache, made once per cache object (Django's
    backend builds a new client object for every call, a measurable share of a small request);
    None for another cache backend (the local-memory cache of tests and the demo)."""
    if not isinstance(backend, RedisCache):
        return None
    client = backend.__dict__.get("_throttle_client")
    if client is None:
        client = backend.__dict__["_throttle_client"] = backend._cache.get_client(write=True)
    return client


class ApiClientRateThrottle(throttling.SimpleRateThrottle):
    """Requests per API client (per address before authentication), counted in the cache.

    A sliding-window counter: one integer per client and window (the rate's period), and the
    estimate `previous window's count × the share of it still inside the sliding window +
    this window's count`, rounded up. Per request that is one read of two small integers and
    one increment — not DRF's default, which reads and rewrites the list of every request's
    time in the period (thousands of floats per request at a high rate).

    The cache is Redis in production. When Redis is down the throttle lets the request through
    (and logs it) instead of failing it: an outage of the counter must not turn every API call
    into a 500 — the API keeps taking responses, only unthrottled until Redis is back."""

    scope = "api_client"
    wait_seconds: float = 0.0

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return self._allow(request, view)
        except CACHE_ERRORS as exc:
            logger.warning("API throttle skipped: the cache is unavailable (%s)", exc)
            return True

    def _allow(self, request: Request, view: Any) -> bool:
        limit, period = self.parse_rate(self.rate)
        if limit is None or period is None:
            return True
        ident = self.get_cache_key(request, view)
        if ident is None:
            return True
        now = self.timer()
        window = int(now // period)
        elapsed = now - window * period
        current, previous = f"{ident}:{window}", f"{ident}:{window - 1}"
        backend = caches["default"]
        redis = _redis_client(backend)
        if redis is not None:  # two round trips; no client object built per request
            current, previous = backend.make_key(current), backend.make_key(previous)
            counts = dict(zip((current, previous), redis.mget([current, previous]), strict=True))
        else:
            counts = backend.get_many([current, previous])
        weight = 1 - elapsed / period
        estimate = math.ceil(int(counts.get(previous) or 0) * weight - 1e-9)
        estimate += int(counts.get(current) or 0)
        if estimate >= limit:
            self.wait_seconds = period - elapsed
            return False
        if redis is not None:
            pipe = redis.pipeline(transaction=False)
            pipe.incr(current).expire(current, 2 * period + 1).execute()
        else:
            try:
                backend.incr(current)
            except ValueError:  # the window's first request (or its key just expired)
                if not backend.add(current, 1, timeout=2 * period + 1):
                    backend.incr(current)
        return True

    def wait(self) -> float | None:
        return self.wait_seconds or None

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        client = request.user
        if isinstance(client, ApiClient):
            return self.cache_format % {"scope": self.scope, "ident": client.pk}
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """Declares the API key to the OpenAPI schema: /api/docs/ gets an Authorize button.

    Defined beside the class it describes so it is registered whenever the class is in use."""

    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": (
                "The whole header value, keyword included: `Api-Key rk_<prefix>_<secret>` "
                "(or, equally, `Bearer rk_<prefix>_<secret>`). In Swagger's Authorize dialog, "
                "paste `Api-Key ` followed by the key."
            ),
        }
