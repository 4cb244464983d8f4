"""Test-only: a worker started with this folder on PYTHONPATH relays WITHOUT the at-most-once
gate, so the kill test can prove it would catch a duplicate (tests/campaigns/test_worker_faults.py).

Python imports `sitecustomize` at start-up; this one waits until the Celery worker is ready (Django
is set up by then) and swaps the relay's gate and its record for naive ones: send, then mark sent —
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

    def naive_begin_sending(ids: list[int], now: Any) -> set[int]:
        return set(ids)  # no `sending` state, no compare-and-set: every row goes out

    def naive_record(handed: Any, summary: Any, now: Any) -> None:
        for h in handed:  # mark sent after the send, whatever the row's state
            Intervention.objects.filter(pk=h.intervention.pk).update(
                status=InterventionStatus.SENT,
                sent_at=timezone.now(),
                provider_message_id=h.provider_id[:200],
            )
            summary.add(summary.sent, h.intervention.channel)

    relay._begin_sending = naive_begin_sending  # type: ignore[assignment]
    relay._record = naive_record  # type: ignore[assignment]
