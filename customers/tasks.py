"""Celery entry points for customer data: thin wrappers that take JSON-safe arguments.

Logic lives in customers.importers / customers.services; each task is safe to run twice
because imports are upserts keyed by external id.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import shared_task

from customers.importers import import_file


@shared_task(acks_late=True, reject_on_worker_lost=True)
def import_file_task(
    *,
    kind: str,
    path: str,
    mapping: dict[str, str] | None = None,
    date_format: str | None = None,
    create_customers: bool = False,
) -> dict[str, Any]:
    """Import a file the worker can read (e.g. an upload on shared storage); returns the summary."""
    summary = import_file(
        kind=kind,
        path=Path(path),
        mapping=mapping,
        date_format=date_format,
        create_customers=create_customers,
    )
    return summary.to_dict()
