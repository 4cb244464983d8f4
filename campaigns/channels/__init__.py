"""Delivery channels behind one small interface (`base.ChannelBackend`): email, SMS, coupon,
callback, push (Web Push and FCM: push.py) and in-app (the inbox: inapp.py);
`registry.channel_backend` picks the backend of a channel per settings.

The relay (campaigns.services.relay.interventions_relay) claims an intervention, builds an
`OutboundMessage` and calls `backend.send(message)`; the backend returns the provider's message
id or raises `TransientDeliveryError` (retried with backoff) or `PermanentDeliveryError`
(recorded as failed). Backends are chosen per settings (EMAIL_BACKEND, SMS_BACKEND).
"""
