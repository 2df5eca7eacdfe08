-- Every way a session ends (logout, DELETE /v1/auth/sessions, password
-- change or reset, refresh-token reuse, suspension, role change, erasure,
-- stoactl, clean-up) sets revoked_at on its row. This trigger tells the
-- live channel (stoa/realtime.h), in the same transaction: the session's
-- channel s.<id> hears session.revoked {session_id, reason}, and ~2 s
-- later every connection on those channels is closed, so a client that
-- ignores the event still loses its stream once it has heard it.
--
-- Statement-level with transition tables: one statement that ends many
-- sessions costs one INSERT of publish rows (one per session, since each
-- event names its session) and one close row for all of them. Sessions
-- traded from an API key (api_key_id set) hold no live channel: skipped.
-- The channel names ('s.' || id) and the jobs' payloads are the contract
-- of modules/common/include/stoa/realtime.h. max_attempts stays small: a
-- live event minutes late is noise.
CREATE FUNCTION auth.sessions_publish_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    WITH ended AS (
        SELECT n.id, coalesce(n.revoke_reason, 'revoked') AS reason
        FROM new_rows n JOIN old_rows o ON o.id = n.id
        WHERE o.revoked_at IS NULL AND n.revoked_at IS NOT NULL
          AND n.api_key_id IS NULL
    ), publish AS (
        INSERT INTO jobs.outbox (kind, payload, max_attempts)
        SELECT 'realtime.publish', jsonb_build_object(
                   'channels', jsonb_build_array('s.' || e.id),
                   'event', jsonb_build_object(
                       'id', 'evt_' || gen_random_uuid(),
                       'type', 'session.revoked',
                       'created', extract(epoch FROM now())::bigint,
                       'data', jsonb_build_object('session_id', e.id,
                                                  'reason', e.reason))),
               5
        FROM ended e
        RETURNING 1
    )
    -- At most 1000 names a job (the contract): a larger statement gets a
    -- close row per thousand sessions.
    INSERT INTO jobs.outbox (kind, payload, run_at, max_attempts)
    SELECT 'realtime.close',
           jsonb_build_object('channels', jsonb_agg('s.' || c.id)),
           now() + interval '2 seconds', 5
    FROM (SELECT id, (row_number() OVER () - 1) / 1000 AS chunk FROM ended) c
    GROUP BY c.chunk;
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_publish_revoked AFTER UPDATE ON auth.sessions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION auth.sessions_publish_revoked();
