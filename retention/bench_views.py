"""The reference endpoint of bench/api_load.py: the least a web request that writes one row can
cost here (Django's middleware, one INSERT, a JSON answer) — no DRF, no key, no validation.

Routed only when RETENTION_BENCH_ENDPOINTS=1 (never by default, so never in production unless
someone sets it). It writes into `bench_reference_write`, a table the bench creates."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

REFERENCE_TABLE = "bench_reference_write"


@csrf_exempt  # a load generator sends no CSRF token; this view is never routed in production
@require_POST
def reference_write(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {REFERENCE_TABLE} (body) VALUES (%s::jsonb) RETURNING id",
            [request.body.decode() or "{}"],
        )
        (row_id,) = cursor.fetchone()
    return JsonResponse({"id": row_id}, status=201)
