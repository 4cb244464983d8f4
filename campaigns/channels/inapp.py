"""In-app messages: sending puts the message in the customer's inbox (campaigns.InboxMessage),
which the shop's app reads through GET /api/v1/customers/{external_id}/messages. The
intervention is `sent` once the message is in the inbox and `delivered` when the app first
fetches it (campaigns.services.inbox)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from campaigns.channels.base import OutboundMessage, SerialChannel
from campaigns.models import InboxMessage


class InAppChannel(SerialChannel):
    name = "in_app"

    def open(self) -> None:
        pass

    def send(self, message: OutboundMessage) -> str:
        now = timezone.now()
        expires = message.expires_at or now + timedelta(days=settings.IN_APP_MESSAGE_DAYS)
        # One inbox message per intervention, whatever happens to a relay in between.
        inbox, _ = InboxMessage.objects.get_or_create(
            intervention_id=message.intervention_id,
            defaults={
                "customer_id": message.customer_id,
                "title": message.subject[:300],
                "body": message.text,
                "deep_link": message.deep_link[:500],
                "image_url": message.image_url[:500],
                "coupon_code": message.coupon_code,
                "created_at": now,
                "expires_at": expires,
            },
        )
        return f"inbox-{inbox.pk}"

    def close(self) -> None:
        pass
