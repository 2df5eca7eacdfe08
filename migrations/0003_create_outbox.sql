-- The transactional outbox: rows are written in the same transaction as
-- the change that causes them and claimed by stoa-jobs with
-- FOR UPDATE SKIP LOCKED.
CREATE TABLE jobs.outbox (
    id           bigserial PRIMARY KEY,
    kind         text NOT NULL CHECK (length(kind) BETWEEN 1 AND 100),
    payload      jsonb NOT NULL DEFAULT '{}'::jsonb,
    dedupe_key   text,
    run_at       timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL DEFAULT 25 CHECK (max_attempts > 0),
    last_error   text,
    locked_by    text,
    locked_until timestamptz,
    done_at      timestamptz,
    dead_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- One effect per dedupe key and kind: enqueueing twice is harmless.
CREATE UNIQUE INDEX outbox_dedupe_idx ON jobs.outbox (kind, dedupe_key)
    WHERE dedupe_key IS NOT NULL;
-- The worker's claim query walks only pending rows, oldest due first.
CREATE INDEX outbox_pending_idx ON jobs.outbox (run_at)
    WHERE done_at IS NULL AND dead_at IS NULL;

-- Wake the workers when rows are committed (NOTIFY is delivered at
-- commit, so a rolled-back enqueue wakes nobody).
CREATE FUNCTION jobs.outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('stoa_jobs', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON jobs.outbox
    FOR EACH STATEMENT EXECUTE FUNCTION jobs.outbox_notify();
