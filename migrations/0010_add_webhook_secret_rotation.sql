-- Secret rotation for outbound webhooks: during the overlap, deliveries are
-- signed with both the new and the previous secret (Standard Webhooks
-- lists several signatures), so receivers can switch without a gap.
ALTER TABLE admin.webhook_endpoints
    ADD COLUMN previous_secret text,
    ADD COLUMN previous_secret_until timestamptz;
