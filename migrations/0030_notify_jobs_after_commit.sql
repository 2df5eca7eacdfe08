-- NOTIFY takes one cluster-wide lock at commit and holds it through the
-- commit's WAL flush, so every transaction that queued a job committed
-- after the one before it: writes that enqueue (Stripe webhooks, sign-ups,
-- mails) ran at one fsync each, whatever their concurrency. stoa's own
-- connections now say at connect (stoa.jobs_wake = client) that they send
-- the wake-up themselves once the transaction has committed, out of the
-- commit (modules/common/db.c); the trigger wakes the workers only for
-- every other writer (psql, scripts), as before.
CREATE OR REPLACE FUNCTION jobs.outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('stoa.jobs_wake', true) IS DISTINCT FROM 'client' THEN
        PERFORM pg_notify('stoa_jobs', '');
    END IF;
    RETURN NULL;
END
$$;
