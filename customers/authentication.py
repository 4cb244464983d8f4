"""API key authentication, per-view scopes and per-client throttling for the REST API."""

from __future__ import annotations

import hmac
import logging
from typing import Any

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
        client = ApiClient.objects.filter(key_prefix=parts[1], is_active=True).first()
        if client is None or not hmac.compare_digest(client.key_hash, api_key_hash(key)):
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        now = timezone.now()
        # Touch last_used_at at most once a minute to keep hot paths write-free.
        if client.last_used_at is None or (now - client.last_used_at).total_seconds() > 60:
            ApiClient.objects.filter(pk=client.pk).update(last_used_at=now)
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


class ApiClientRateThrottle(throttling.SimpleRateThrottle):
    """Requests per API client (per address before authentication), counted in the cache.

    The cache is Redis in production. When Redis is down the throttle lets the request through
    (and logs it) instead of failing it: an outage of the counter must not turn every API call
    into a 500 — the API keeps taking responses, only unthrottled until Redis is back."""

    scope = "api_client"

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except CACHE_ERRORS as exc:
            logger.warning("API throttle skipped: the cache is unavailable (%s)", exc)
            return True

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
