"""Callbacks as agents work them: "no answer" reschedules until the attempts run out, a done
task is read-only (service and admin), a correction is logged next to the original, and the
call sheet carries what the agent reads out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from campaigns.callsheet import callback_call_sheet
from campaigns.models import CallbackTask, Response
from campaigns.services.callbacks import (
    CallbackTaskStateError,
    callback_task_correct_outcome,
    callback_task_record_outcome,
)
from campaigns.services.dispatch import campaign_dispatch
from campaigns.services.relay import interventions_relay
from customers.models import Consent, Order
from customers.selectors import customer_consent_state
from tests.campaigns.conftest import (
    NOON,
    make_campaign,
    make_customers,
    make_offer,
    make_template,
)

pytestmark = pytest.mark.django_db

LATER = NOON + timedelta(hours=1)


@pytest.fixture
def task(settings: Any) -> CallbackTask:
    """One callback (with a coupon offer and a call script) for an agent, dispatched at NOON."""
    settings.CALLBACK_RETRY_ATTEMPTS = 3
    settings.CALLBACK_RETRY_SPACING_HOURS = 4
    customer = make_customers(1, name="Robin Caller", time_zone="Europe/Paris")[0]
    Consent.objects.create(
        customer=customer, channel="call", status="granted", recorded_at=NOON, source="t"
    )
    agent = User.objects.create_user("agent", password="pw-for-tests-1", is_staff=True)
    agent.groups.add(Group.objects.get(name="agents"))
    script = make_template(
        "callback",
        name="Call script",
        subject="Win back {{ first_name }}",
        body="Hello {{ first_name }}, we would like to offer you {{ offer.description }}. "
        "Your code is {{ coupon_code }}.",
    )
    rule = {"name": "call", "channel": "callback", "offer": make_offer(), "template": script}
    campaign_dispatch(campaign=make_campaign(rules=[rule], control_percentage=0), now=NOON)
    interventions_relay(now=NOON)
    return CallbackTask.objects.get()


def test_no_answer_reschedules_the_call_until_the_last_attempt_closes_it(
    task: CallbackTask,
) -> None:
    first = callback_task_record_outcome(task=task, outcome="no_answer", now=LATER)
    assert (task.status, task.outcome, task.attempts) == ("open", "", 1)
    assert task.due_at == LATER + timedelta(hours=4)
    assert first.payload["rescheduled_to"] == task.due_at.isoformat()

    second_call = LATER + timedelta(hours=4)
    callback_task_record_outcome(task=task, outcome="no_answer", now=second_call)
    assert (task.status, task.attempts, task.due_at) == (
        "open",
        2,
        second_call + timedelta(hours=4),
    )

    callback_task_record_outcome(
        task=task, outcome="no_answer", now=second_call + timedelta(hours=4)
    )
    assert (task.status, task.outcome, task.attempts) == ("done", "no_answer", 3)
    assert task.completed_at == second_call + timedelta(hours=4)
    logged = Response.objects.filter(intervention=task.intervention).order_by("pk")
    assert [r.payload["attempt"] for r in logged] == [1, 2, 3]


def test_the_retry_settings_decide_the_attempts_and_their_spacing(
    task: CallbackTask, settings: Any
) -> None:
    settings.CALLBACK_RETRY_ATTEMPTS = 1
    settings.CALLBACK_RETRY_SPACING_HOURS = 24
    callback_task_record_outcome(task=task, outcome="no_answer", now=LATER)
    assert (task.status, task.outcome) == ("done", "no_answer")


def test_a_done_task_takes_no_second_outcome_only_a_logged_correction(task: CallbackTask) -> None:
    original = callback_task_record_outcome(task=task, outcome="reached_declined", now=LATER)
    # The same outcome again (a resubmitted form) changes nothing.
    assert callback_task_record_outcome(task=task, outcome="reached_declined").pk == original.pk
    with pytest.raises(CallbackTaskStateError, match=r"already done .*Correct the outcome"):
        callback_task_record_outcome(task=task, outcome="reached_accepted")
    with pytest.raises(ValueError, match="reason"):
        callback_task_correct_outcome(task=task, outcome="reached_accepted", reason="  ")

    correction = callback_task_correct_outcome(
        task=task, outcome="do_not_call", reason="customer asked not to be called", now=LATER
    )
    assert task.outcome == "do_not_call" and task.status == "done"
    assert correction.payload["correction"] is True
    assert correction.payload["corrects"] == "reached_declined"
    original.refresh_from_db()
    assert original.payload["outcome"] == "reached_declined"  # the original stays
    assert Response.objects.filter(intervention=task.intervention).count() == 2
    assert customer_consent_state(customer=task.customer)["call"]["granted"] is False


def test_a_correction_is_refused_on_an_open_task(task: CallbackTask) -> None:
    with pytest.raises(CallbackTaskStateError, match="still open"):
        callback_task_correct_outcome(task=task, outcome="reached_accepted", reason="oops")


def test_the_call_sheet_has_the_script_coupon_local_time_and_last_five_orders(
    task: CallbackTask,
) -> None:
    Order.objects.bulk_create(
        [
            Order(
                external_id=f"o{i}",
                customer=task.customer,
                placed_at=datetime(2026, 1, 1 + i, tzinfo=UTC),
                amount=Decimal("10") + i,
            )
            for i in range(7)
        ]
    )
    sheet = callback_call_sheet(task=task, now=NOON)
    code = task.intervention.coupon.code  # type: ignore[attr-defined]
    assert sheet.name == "Robin Caller"
    assert sheet.local_time == "Tue 13:00 (Europe/Paris)"  # NOON UTC in Paris, in November
    assert sheet.coupon_code == code and code in sheet.script
    assert sheet.script.startswith("Hello Robin, we would like to offer you 15% off")
    assert [o.external_id for o in sheet.orders] == ["o6", "o5", "o4", "o3", "o2"]
    assert sheet.attempts_text == "Call 1 of 3"
    assert sheet.local_time_warning == ""
    night = callback_call_sheet(task=task, now=NOON + timedelta(hours=9))  # 22:00 in Paris
    assert night.local_time_warning.startswith("It is 22:00 there, inside quiet hours")


def agent_client() -> Client:
    client = Client()
    client.force_login(User.objects.get(username="agent"))
    return client


def test_the_agent_page_reschedules_on_no_answer_and_is_read_only_once_done(
    task: CallbackTask,
) -> None:
    client = agent_client()
    url = reverse("admin:campaigns_mycallback_change", args=[task.pk])
    page = client.get(url).content.decode()
    assert "Robin Caller" in page and task.intervention.coupon.code in page  # type: ignore[attr-defined]
    assert "Call 1 of 3" in page and 'name="_save"' in page

    followed = client.post(url, {"outcome": "no_answer", "notes": "voicemail"}, follow=True)
    assert "no answer (call 1 of 3). Rescheduled: call again at" in followed.content.decode()
    task.refresh_from_db()
    assert task.status == "open" and task.attempts == 1

    client.post(url, {"outcome": "reached_accepted", "notes": "will order"})
    task.refresh_from_db()
    assert task.status == "done" and task.outcome == "reached_accepted"
    done = client.get(url).content.decode()
    assert 'name="_save"' not in done and "can no longer be edited" in done
    assert 'id="correct-outcome"' in done
    # A forged edit of the done task is refused, and changes nothing.
    refused = client.post(url, {"outcome": "do_not_call", "notes": "x"})
    assert refused.status_code == 403
    task.refresh_from_db()
    assert task.outcome == "reached_accepted"

    correct = reverse("admin:campaigns_mycallback_correct", args=[task.pk])
    client.post(correct, {"outcome": "reached_declined", "reason": "misclicked"})
    task.refresh_from_db()
    assert task.outcome == "reached_declined"
    log = client.get(url).content.decode()
    assert "correction</strong> of “reached_accepted” to reached_declined" in log


def test_team_leads_reassign_open_callbacks_but_never_edit_outcomes_or_done_tasks(
    task: CallbackTask,
) -> None:
    lead = User.objects.create_user("lead", password="pw-for-tests-1", is_staff=True)
    lead.groups.add(Group.objects.get(name="crm staff"))
    client = Client()
    client.force_login(lead)
    url = reverse("admin:campaigns_callbacktask_change", args=[task.pk])
    page = client.get(url).content.decode()
    assert 'name="assigned_agent"' in page and 'name="outcome"' not in page
    assert reverse("admin:customers_customer_change", args=[task.customer_id]) in page
    moved = client.post(
        url,
        {
            "assigned_agent": lead.pk,
            "due_at_0": "2026-11-25",
            "due_at_1": "09:00:00",
            "notes": "",
        },
    )
    assert moved.status_code == 302
    task.refresh_from_db()
    assert task.assigned_agent == lead and task.status == "open"

    callback_task_record_outcome(task=task, outcome="reached_accepted", now=LATER)
    done = client.get(url).content.decode()
    assert 'name="assigned_agent"' not in done and 'name="_save"' not in done


def test_my_callbacks_lists_open_tasks_before_done_ones(task: CallbackTask) -> None:
    later = make_customers(1, start=500, name="Later Caller")[0]
    CallbackTask.objects.create(
        customer=later,
        intervention=task.intervention.__class__.objects.create(
            **{
                f.name: getattr(task.intervention, f.name)
                for f in task.intervention._meta.concrete_fields
                if f.name not in ("id", "customer", "cycle")
            },
            customer=later,
            cycle=task.intervention.cycle,
        ),
        assigned_agent=task.assigned_agent,
        due_at=task.due_at + timedelta(days=1),
    )
    callback_task_record_outcome(task=task, outcome="reached_declined", now=LATER)
    page = agent_client().get(reverse("admin:campaigns_mycallback_changelist")).content.decode()
    assert page.index("Later Caller") < page.index("Robin Caller")
