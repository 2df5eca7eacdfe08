-- The dashboard's failed-payment rate asks, for each invoice due in its
-- range, whether Stripe ever reported a failed payment of it. Stripe keeps
-- a failed invoice `open` (it retries), so the fact lives only in the
-- stored invoice.payment_failed events: this index finds them by invoice
-- id (the expression is the one the statement uses, verbatim).
CREATE INDEX stripe_events_failed_invoice_idx
    ON billing.stripe_events ((payload #>> '{data,object,id}'))
    WHERE type = 'invoice.payment_failed';
