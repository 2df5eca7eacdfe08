-- A user's entitlements come from the newest entitling subscription
-- (trialing, active, past_due) whose price is in the catalogue. The lookup
-- starts from the catalogue's prices, which the operator keeps to a few,
-- and asks this index for the user's newest subscription on each: it
-- costs the same whether the user holds two subscriptions or thousands,
-- and however many of them are on prices the catalogue does not know.
CREATE INDEX subscriptions_entitling_idx
    ON billing.subscriptions (user_id, stripe_price_id, updated_at DESC)
    WHERE status IN ('trialing', 'active', 'past_due');
