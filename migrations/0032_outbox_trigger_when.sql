-- stoa's own connections send the jobs wake-up themselves (migration
-- 0030), yet every statement of theirs that enqueued a job still called
-- the trigger's PL/pgSQL function to find that out. The test now sits in
-- the trigger's WHEN clause, which Postgres evaluates without calling the
-- function; the function still checks, for a trigger created without it.
DROP TRIGGER outbox_notify ON jobs.outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON jobs.outbox
    FOR EACH STATEMENT
    WHEN (current_setting('stoa.jobs_wake', true) IS DISTINCT FROM 'client')
    EXECUTE FUNCTION jobs.outbox_notify();
