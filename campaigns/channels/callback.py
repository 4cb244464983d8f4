"""The agent channel: a CallbackTask per intervention, assigned round-robin to the active staff
users of the agents group (settings.CAMPAIGN_AGENTS_GROUP); unassigned if the group is empty."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from campaigns.channels.base import OutboundMessage, SerialChannel
from campaigns.models import CallbackTask


class CallbackChannel(SerialChannel):
    name = "callback"

    def __init__(self) -> None:
        self.agents: list[int] = []
        self.next_index = 0

    def open(self) -> None:
        self.agents = list(
            get_user_model()
            .objects.filter(
                groups__name=settings.CAMPAIGN_AGENTS_GROUP, is_active=True, is_staff=True
            )
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        last = (
            CallbackTask.objects.exclude(assigned_agent=None)
            .order_by("-pk")
            .values_list("assigned_agent_id", flat=True)
            .first()
        )
        # Continue the rotation after whoever got the last task, across relay runs.
        self.next_index = self.agents.index(last) + 1 if last in self.agents else 0

    def send(self, message: OutboundMessage) -> str:
        agent = None
        if self.agents:
            agent = self.agents[self.next_index % len(self.agents)]
        task, created = CallbackTask.objects.get_or_create(
            intervention_id=message.intervention_id,
            defaults={
                "customer_id": message.customer_id,
                "assigned_agent_id": agent,
                "due_at": message.due_at or timezone.now(),
                "notes": "",
            },
        )
        if created and agent is not None:
            self.next_index += 1
        return f"callback-{task.pk}"

    def close(self) -> None:
        pass
