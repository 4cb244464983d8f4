"""Test-only: a worker started with this folder on PYTHONPATH relays WITHOUT the at-most-once
gate, so the kill test can prove it would catch a duplicate (tests/campaigns/test_worker_faults.py).

Python imports `sitecustomize` at start-up; this one waits until the Celery worker is ready (Django
is set up by then) and swaps the relay's per-message step for a naive one: send, then mark sent —
no `sending` state, no compare-and-set. A worker killed between the provider's acceptance and the
database write leaves the row `pending`, and the next relay sends it again. Nothing in production
imports this module; it lives under tests/ and only a test's worker environment names it.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_ready


@worker_ready.connect
def _disable_the_at_most_once_gate(**_: Any) -> None:
    from django.utils import timezone

    from campaigns.models import Intervention, InterventionStatus
    from campaigns.services import relay

    def naive_deliver_one(
        backend: Any, intervention: Any, extras: Any, summary: Any, now: Any
    ) -> relay.Outcome:
        message = relay.intervention_message(
            intervention=intervention, reasons=extras.reasons, products=extras.products
        )
        provider_id = backend.send(message)
        Intervention.objects.filter(pk=intervention.pk).update(
            status=InterventionStatus.SENT, sent_at=timezone.now(), provider_message_id=provider_id
        )
        summary.add(summary.sent, intervention.channel)
        return relay.Outcome.SENT

    relay._deliver_one = naive_deliver_one  # type: ignore[assignment]
