"""Callback tasks as agents work them: an outcome per call ("no answer" reschedules the call
until the attempts run out) and, once a task is done, only an explicit, logged correction.

Every call and every correction is a response of the intervention (kind callback_outcome), so
the log keeps what was first recorded next to what corrected it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from campaigns.models import CallbackOutcome, CallbackStatus, CallbackTask, Response, ResponseKind
from campaigns.services.responses import response_record
from customers.services import consent_set


class CallbackTaskStateError(ValueError):
    """The action does not fit the task's state (an outcome on a done task, a correction on
    an open one); the message says what to do instead."""


def _check_outcome(outcome: str) -> None:
    if outcome not in CallbackOutcome.values:
        raise ValueError(
            f"unknown outcome {outcome!r}: expected one of {', '.join(CallbackOutcome.values)}"
        )


def _revoke_call_consent(task: CallbackTask, now: datetime) -> None:
    consent_set(
        customer=task.customer,
        channel="call",
        status="revoked",
        source="callback_outcome",
        recorded_at=now,
    )


def callback_outcomes_logged(*, task: CallbackTask) -> list[Response]:
    """The task's calls and corrections as logged, oldest first."""
    return list(
        Response.objects.filter(
            intervention_id=task.intervention_id, kind=ResponseKind.CALLBACK_OUTCOME
        ).order_by("occurred_at", "pk")
    )


def callback_task_record_outcome(
    *,
    task: CallbackTask,
    outcome: str,
    notes: str = "",
    agent: Any = None,
    now: datetime | None = None,
) -> Response:
    """Log one call's outcome. "No answer" before the last allowed call (CALLBACK_RETRY_ATTEMPTS)
    keeps the task open and due again CALLBACK_RETRY_SPACING_HOURS from now; anything else, or
    the last unanswered call, closes it. `do_not_call` also revokes the customer's call consent.

    The same outcome sent again for a done task returns the logged response (a resubmitted
    form changes nothing); a different one is refused: a done task changes only by correction.
    """
    _check_outcome(outcome)
    now = now or timezone.now()
    with transaction.atomic():
        locked = CallbackTask.objects.select_for_update().get(pk=task.pk)
        if locked.status == CallbackStatus.DONE:
            logged = callback_outcomes_logged(task=locked)
            if outcome == locked.outcome and logged:
                return logged[-1]
            raise CallbackTaskStateError(
                f"this callback is already done ({locked.get_outcome_display()}); "
                "use “Correct the outcome” to change it"
            )
        attempt = locked.attempts + 1
        retry = outcome == CallbackOutcome.NO_ANSWER and attempt < settings.CALLBACK_RETRY_ATTEMPTS
        locked.attempts, locked.last_attempt_at, locked.notes = attempt, now, notes
        if retry:
            locked.due_at = now + timedelta(hours=settings.CALLBACK_RETRY_SPACING_HOURS)
            locked.status = CallbackStatus.OPEN
        else:
            locked.outcome, locked.status, locked.completed_at = outcome, CallbackStatus.DONE, now
        locked.save()
        payload = {
            "outcome": outcome,
            "agent": getattr(agent, "username", ""),
            "notes": notes,
            "attempt": attempt,
        }
        if retry:
            payload["rescheduled_to"] = locked.due_at.isoformat()
        response, _ = response_record(
            intervention=locked.intervention,
            kind=ResponseKind.CALLBACK_OUTCOME,
            occurred_at=now,
            idempotency_key=f"callback-{locked.pk}-attempt-{attempt}",
            payload=payload,
        )
        if outcome == CallbackOutcome.DO_NOT_CALL:
            _revoke_call_consent(locked, now)
    task.refresh_from_db()
    return response


def callback_task_correct_outcome(
    *,
    task: CallbackTask,
    outcome: str,
    reason: str,
    agent: Any = None,
    now: datetime | None = None,
) -> Response:
    """Change a done task's outcome on purpose: the task shows the corrected outcome and a
    response marked as a correction (naming the outcome it corrects and why) joins the log;
    the original stays. Correcting to `do_not_call` revokes call consent; correcting away from
    it does not grant consent back (only the customer can)."""
    _check_outcome(outcome)
    if not reason.strip():
        raise ValueError("reason: say why the outcome is corrected (it is kept in the log)")
    now = now or timezone.now()
    with transaction.atomic():
        locked = CallbackTask.objects.select_for_update().get(pk=task.pk)
        if locked.status != CallbackStatus.DONE:
            raise CallbackTaskStateError(
                "this callback is still open: record the call's outcome instead of a correction"
            )
        if outcome == locked.outcome:
            raise ValueError(f"outcome: the task's outcome is {outcome!r} already")
        corrections = sum(
            1 for r in callback_outcomes_logged(task=locked) if r.payload.get("correction")
        )
        previous, locked.outcome = locked.outcome, outcome
        locked.save(update_fields=["outcome"])
        response, _ = response_record(
            intervention=locked.intervention,
            kind=ResponseKind.CALLBACK_OUTCOME,
            occurred_at=now,
            idempotency_key=f"callback-{locked.pk}-correction-{corrections + 1}",
            payload={
                "outcome": outcome,
                "correction": True,
                "corrects": previous,
                "reason": reason.strip(),
                "agent": getattr(agent, "username", ""),
            },
        )
        if outcome == CallbackOutcome.DO_NOT_CALL:
            _revoke_call_consent(locked, now)
    task.refresh_from_db()
    return response
