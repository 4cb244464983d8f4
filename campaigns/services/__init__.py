"""The state changes of campaigns, one module per sub-domain: plan (who a cycle matches and
what is decided for them; reads only), dispatch (record a cycle: the interventions outbox and
coupons), relay (deliver the outbox), responses (responses, webhooks, callbacks, unsubscribes),
coupons (redemption) and setup (staff groups, seeded campaigns)."""
