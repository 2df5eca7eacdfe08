/* statements.c - every query of the jobs worker. */
#include "jobs.h"
#include "stoa/entitlements.h"
#include "stoa/updates.h"

/* Today's date in UTC, as analytics days are counted. */
#define ANALYTICS_TODAY "(now() AT TIME ZONE 'UTC')::date"

/* Where a batch of the entitlements fan-out starts: after the user id $3,
 * or from the first when NULL. */
#define FANOUT_AFTER                                                           \
    "coalesce($3::uuid, '00000000-0000-0000-0000-000000000000')"

/* The row is still leased to this worker ($2). Written so the planner
 * cannot answer it from outbox_leased_idx: that index keeps an entry for
 * every lease a worker ever took until vacuum clears the dead ones, so a
 * bitmap scan of it for one worker grows with the jobs run since the last
 * vacuum. The statements that record an outcome take their rows by id
 * (outbox_pkey) and only check the lease on them; they are planned at
 * each execution (plan_each_time), because the plan a connection would
 * keep was made when the outbox was empty: a sequential scan, which read
 * the whole growing outbox for every batch of jobs done. */
#define HELD_BY_WORKER "(locked_by = $2) IS TRUE"

/* Whether an account's preferences let product mail through (absent:
 * yes). */
#define WANTS_PRODUCT_MAIL(u)                                                  \
    "coalesce(" u ".notification_prefs ->> 'product_updates', 'true') <> "     \
    "'false'"
/* One batch of an update's fan-out, in one statement: the next `$2`
 * accounts of the audience after the update's cursor (in id order, none
 * created after the update), their feed rows, their mail jobs, the
 * update's running count and its cursor. The caller holds the update's row
 * (JOBS_SQL_UPDATE_FANOUT_LOCK), so two runs of one fan-out take turns; a
 * batch run twice writes nothing twice (the primary key, the mail jobs'
 * dedupe keys) and counts only the rows it wrote. */
#define FANOUT_SQL(pred)                                                                \
    "WITH up AS (SELECT id, audience, created_at, fanout_after FROM "                   \
    "admin.updates WHERE id = $1::uuid), batch AS (SELECT u.id, "                       \
    "u.notification_prefs FROM auth.users u, up WHERE " STOA_AUDIENCE_SQL_ACTIVE        \
    " AND u.created_at <= up.created_at AND u.id > "                                    \
    "coalesce(up.fanout_after, '00000000-0000-0000-0000-000000000000') AND " pred       \
    " ORDER BY u.id LIMIT $2::int), ins AS (INSERT INTO "                               \
    "admin.update_recipients (update_id, user_id, posted_at) SELECT up.id, "            \
    "b.id, up.created_at FROM batch b, up ON CONFLICT DO NOTHING RETURNING "            \
    "user_id), mail AS (INSERT INTO jobs.outbox (kind, payload, dedupe_key) "           \
    "SELECT '" STOA_UPDATES_MAIL_KIND "', jsonb_build_object('update_id', "             \
    "$1::text, 'user_id', b.id), $1::text || ':' || b.id FROM ins JOIN batch "          \
    "b ON b.id = ins.user_id WHERE " WANTS_PRODUCT_MAIL(                                \
        "b") " ON CONFLICT (kind, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING " \
             "RETURNING 1), counted AS (UPDATE admin.updates SET delivered = "          \
             "delivered + (SELECT count(*) FROM ins), fanout_after = coalesce((SELECT " \
             "id FROM batch ORDER BY id DESC LIMIT 1), fanout_after) WHERE id = "       \
             "$1::uuid) "                                                               \
             "SELECT (SELECT count(*) FROM batch), (SELECT string_agg(user_id::text, "  \
             "',') FROM ins), (SELECT count(*) FROM mail)"

const stoa_db_statement_t jobs_statements[JOBS_SQL_COUNT] = {
    /* Claims due, unleased jobs; SKIP LOCKED lets many workers on many
     * hosts claim side by side, and the lease (locked_until) hands a job
     * to someone else if its worker dies mid-job. The oldest due come
     * first (outbox_pending_idx, in run_at order, stops at the LIMIT);
     * a claim's quick jobs run in that order, then its slow ones. */
    [JOBS_SQL_JOBS_CLAIM] =
        {"jobs_claim",
         "WITH due AS (SELECT id FROM jobs.outbox WHERE done_at IS NULL AND "
         "dead_at IS NULL AND run_at <= now() AND (locked_until IS NULL OR "
         "locked_until < now()) ORDER BY run_at LIMIT $3 FOR UPDATE SKIP LOCKED), "
         "claimed AS (UPDATE jobs.outbox o SET locked_by = $1, locked_until = "
         "now() + make_interval(secs => $2::int), attempts = o.attempts + 1 FROM "
         "due WHERE o.id = due.id RETURNING o.id, o.kind, o.payload::text AS "
         "payload, o.attempts, o.max_attempts, o.dedupe_key, extract(epoch FROM "
         "o.created_at)::bigint AS created, o.run_at) SELECT id, kind, payload, "
         "attempts, max_attempts, dedupe_key, created FROM claimed ORDER BY "
         "run_at, id",
         3},
    /* Jobs claimed but not started ($1, a bigint[]: the worker is
     * stopping, or holds more slow jobs than it should) go back without
     * spending an attempt. */
    [JOBS_SQL_JOBS_RELEASE] =
        {"jobs_release",
         "UPDATE jobs.outbox SET locked_by = NULL, locked_until = NULL, "
         "attempts = attempts - 1 WHERE id = ANY ($1::bigint[]) AND " HELD_BY_WORKER
         " AND done_at IS NULL",
         2, true},
    /* The heartbeat: every job still held by this process's workers ($1,
     * a text[] of worker ids) keeps its lease. A job finished or taken over
     * has another locked_by and is left alone. */
    [JOBS_SQL_JOBS_HEARTBEAT] =
        {"jobs_heartbeat",
         "UPDATE jobs.outbox SET locked_until = now() + make_interval(secs => "
         "$2::int) WHERE locked_by = ANY ($1::text[]) AND done_at IS NULL AND "
         "dead_at IS NULL",
         2},
    /* The jobs of a run that succeeded ($1, a bigint[]), in one statement
     * and one commit; only those this worker still holds. */
    [JOBS_SQL_JOBS_DONE] =
        {"jobs_done",
         "UPDATE jobs.outbox SET done_at = now(), locked_by = NULL, "
         "locked_until = NULL, last_error = NULL WHERE id = ANY ($1::bigint[]) "
         "AND " HELD_BY_WORKER,
         2, true},
    [JOBS_SQL_JOBS_RETRY] =
        {"jobs_retry",
         "UPDATE jobs.outbox SET run_at = now() + make_interval(secs => $3::int), "
         "last_error = left($4, 1000), locked_by = NULL, locked_until = NULL "
         "WHERE id = $1 AND " HELD_BY_WORKER,
         4, true},
    [JOBS_SQL_JOBS_DEAD] =
        {"jobs_dead",
         "UPDATE jobs.outbox SET dead_at = now(), last_error = left($3, 1000), "
         "locked_by = NULL, locked_until = NULL WHERE id = $1 AND " HELD_BY_WORKER,
         3, true},
    /* One row per schedule slot, whichever worker gets there first. */
    [JOBS_SQL_JOBS_SCHEDULE] =
        {"jobs_schedule",
         "INSERT INTO jobs.outbox (kind, payload, dedupe_key) VALUES ($1, "
         "'{}'::jsonb, $2) ON CONFLICT (kind, dedupe_key) WHERE dedupe_key IS "
         "NOT NULL DO NOTHING",
         2},
    /* Milliseconds until the next job that is not due yet (NULL: none),
     * from outbox_pending_idx: an idle worker wakes for it instead of
     * waiting out its poll interval. */
    [JOBS_SQL_JOBS_NEXT_DUE] =
        {"jobs_next_due",
         "SELECT ceil(extract(epoch FROM min(run_at) - now()) * 1000)::bigint "
         "FROM jobs.outbox WHERE done_at IS NULL AND dead_at IS NULL AND "
         "run_at > now() AND run_at < now() + make_interval(secs => $1::int)",
         1},
    /* Fan-out of a domain event to every live endpoint subscribed to it;
     * the dedupe key makes a re-run of the fan-out harmless. */
    [JOBS_SQL_WEBHOOKS_FANOUT] =
        {"webhooks_fanout",
         "INSERT INTO jobs.outbox (kind, payload, dedupe_key, max_attempts) "
         "SELECT 'webhook.deliver', jsonb_build_object('endpoint_id', e.id, "
         "'event', $3::jsonb), e.id || ':' || $1, 8 "
         "FROM admin.webhook_endpoints e WHERE e.deleted_at IS NULL AND "
         "e.disabled_at IS NULL AND ($2 = ANY (e.events) OR '*' = ANY (e.events)) "
         "ON CONFLICT (kind, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING",
         3},
    [JOBS_SQL_WEBHOOK_ENDPOINT] =
        {"webhook_endpoint",
         "SELECT url, secret, disabled_at IS NOT NULL OR deleted_at IS NOT NULL, "
         "failing_since < now() - interval '5 days', CASE WHEN "
         "previous_secret_until > now() THEN previous_secret END FROM "
         "admin.webhook_endpoints WHERE id = $1::uuid",
         1},
    /* An attempt is logged before it is sent, so one cut short by a dead
     * worker is still on record; the next attempt marks such rows (no
     * outcome yet) as interrupted. */
    [JOBS_SQL_WEBHOOK_DELIVERY_BEGIN] =
        {"webhook_delivery_begin",
         "WITH interrupted AS (UPDATE admin.webhook_deliveries SET error = "
         "'interrupted' WHERE endpoint_id = $1::uuid AND event_id = $2 AND "
         "attempt < $4::int AND status IS NULL AND latency_ms IS NULL AND "
         "error IS NULL) INSERT INTO admin.webhook_deliveries (endpoint_id, "
         "event_id, event_type, attempt) VALUES ($1::uuid, $2, $3, $4::int) "
         "RETURNING id",
         4},
    [JOBS_SQL_WEBHOOK_DELIVERY_END] =
        {"webhook_delivery_end",
         "UPDATE admin.webhook_deliveries SET status = $2::int, latency_ms = "
         "$3::int, error = left($4, 500) WHERE id = $1::bigint",
         4},
    [JOBS_SQL_WEBHOOK_SUCCEEDED] =
        {"webhook_succeeded",
         "UPDATE admin.webhook_endpoints SET failing_since = NULL, "
         "last_success_at = now() WHERE id = $1::uuid",
         1},
    [JOBS_SQL_WEBHOOK_FAILED] =
        {"webhook_failed",
         "UPDATE admin.webhook_endpoints SET failing_since = coalesce("
         "failing_since, now()) WHERE id = $1::uuid RETURNING failing_since < "
         "now() - interval '5 days'",
         1},
    [JOBS_SQL_WEBHOOK_DISABLE] =
        {"webhook_disable",
         "UPDATE admin.webhook_endpoints SET disabled_at = now(), "
         "disabled_reason = 'failing for 5 days' WHERE id = $1::uuid AND "
         "disabled_at IS NULL RETURNING url",
         1},
    /* Mail to every admin that an endpoint was switched off, once. */
    [JOBS_SQL_WEBHOOK_DISABLED_MAIL] =
        {"webhook_disabled_mail",
         "INSERT INTO jobs.outbox (kind, payload, dedupe_key) SELECT "
         "'email.send', jsonb_build_object('template', 'webhook_disabled', 'to', "
         "u.email, 'data', jsonb_build_object('name', u.name, 'url', $2::text)), "
         "'webhook-disabled:' || $1 || ':' || u.id FROM auth.users u WHERE "
         "u.role = 'admin' AND u.status = 'active' ON CONFLICT (kind, "
         "dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING",
         2},
    [JOBS_SQL_CLEANUP_SESSIONS] =
        {"cleanup_sessions",
         "DELETE FROM auth.sessions WHERE expires_at < now() - interval '30 days' "
         "OR revoked_at < now() - interval '30 days'",
         0},
    /* Sealed successors exist only for the reuse window (at most 300 s). */
    [JOBS_SQL_CLEANUP_SUCCESSORS] =
        {"cleanup_successors",
         "UPDATE auth.refresh_tokens SET successor_sealed = NULL WHERE "
         "successor_sealed IS NOT NULL AND spent_at < now() - interval '10 "
         "minutes'",
         0},
    [JOBS_SQL_CLEANUP_REFRESH_TOKENS] =
        {"cleanup_refresh_tokens",
         "DELETE FROM auth.refresh_tokens WHERE expires_at < now()", 0},
    [JOBS_SQL_CLEANUP_EMAIL_TOKENS] =
        {"cleanup_email_tokens",
         "DELETE FROM auth.email_tokens WHERE expires_at < now() - interval "
         "'1 day'",
         0},
    [JOBS_SQL_CLEANUP_IDEMPOTENCY] =
        {"cleanup_idempotency",
         "DELETE FROM admin.idempotency_keys WHERE created_at < now() - "
         "interval '24 hours'",
         0},
    [JOBS_SQL_CLEANUP_MFA_CHALLENGES] =
        {"cleanup_mfa_challenges",
         "DELETE FROM auth.mfa_challenges WHERE expires_at < now() - interval "
         "'1 day'",
         0},
    [JOBS_SQL_CLEANUP_WEBHOOK_DELIVERIES] =
        {"cleanup_webhook_deliveries",
         "DELETE FROM admin.webhook_deliveries WHERE at < now() - interval "
         "'30 days'",
         0},
    /* Stripe events are the explanation of every billing state: kept for
     * 400 days, beyond any dispute window. */
    [JOBS_SQL_CLEANUP_STRIPE_EVENTS] =
        {"cleanup_stripe_events",
         "DELETE FROM billing.stripe_events WHERE received_at < now() - interval "
         "'400 days'",
         0},
    /* Sessions revoked within an access token's life, for re-writing their
     * Redis markers (a marker lost while Redis was down comes back). */
    [JOBS_SQL_REVOKED_RECENTLY] =
        {"revoked_recently",
         "SELECT id FROM auth.sessions WHERE revoked_at > now() - "
         "make_interval(secs => $1::int) UNION ALL SELECT id FROM auth.api_keys "
         "WHERE revoked_at > now() - make_interval(secs => $1::int)",
         1},
    [JOBS_SQL_SUSPENDED_USERS] =
        {"suspended_users",
         "SELECT id FROM auth.users WHERE status = 'suspended'", 0},
    /* Done jobs are kept a week for `stoactl jobs list` and support
     * questions; they carry no token (links are made when mailed). */
    [JOBS_SQL_CLEANUP_OUTBOX] =
        {"cleanup_outbox",
         "DELETE FROM jobs.outbox WHERE done_at < now() - interval '7 days'",
         0},
    /* --- mailed links ------------------------------------------------- */
    /* The hash of a link's token, only while its account is active. */
    [JOBS_SQL_MAIL_LINK_INSERT] =
        {"mail_link_insert",
         "INSERT INTO auth.email_tokens (token_hash, user_id, purpose, "
         "expires_at) SELECT $1::bytea, u.id, $3, now() + make_interval(secs => "
         "$4::int) FROM auth.users u WHERE u.id = $2::uuid AND u.status = "
         "'active' RETURNING 1",
         4},
    [JOBS_SQL_RESET_ACCOUNT] =
        {"reset_account",
         "SELECT id, email, name FROM auth.users WHERE lower(email) = $1 AND "
         "status = 'active'",
         1},
    [JOBS_SQL_UPDATE_FOR_FANOUT] =
        {"update_for_fanout",
         "SELECT (SELECT k FROM jsonb_object_keys(audience) k LIMIT 1), title, "
         "left(body, 280), action_required, " STOA_DB_TS(
             "created_at") ", fanout_after, length(body) > 280 FROM admin.updates WHERE id = "
                           "$1::uuid",
         1},
    [JOBS_SQL_UPDATE_FANOUT_USER_IDS] =
        {"update_fanout_user_ids",
         FANOUT_SQL(STOA_AUDIENCE_SQL_USER_IDS(
             "ARRAY(SELECT jsonb_array_elements_text(up.audience -> "
             "'user_ids'))::uuid[]")),
         2},
    [JOBS_SQL_UPDATE_FANOUT_ROLE] = {"update_fanout_role",
                                     FANOUT_SQL(STOA_AUDIENCE_SQL_ROLE(
                                         "(up.audience ->> 'role')")),
                                     2},
    [JOBS_SQL_UPDATE_FANOUT_PLAN] = {"update_fanout_plan",
                                     FANOUT_SQL(STOA_AUDIENCE_SQL_PLAN(
                                         "(up.audience ->> 'plan')")),
                                     2},
    [JOBS_SQL_UPDATE_FANOUT_ALL] = {"update_fanout_all",
                                    FANOUT_SQL(
                                        STOA_AUDIENCE_SQL_ALL("NULL::text")),
                                    2},
    /* The fan-out's next run, due since the update was sent: claimed
     * (oldest due first) before the mail jobs its own batches queued, so
     * the feed rows are not paced by the mail. */
    [JOBS_SQL_UPDATE_FANOUT_NEXT] =
        {"update_fanout_next",
         "INSERT INTO jobs.outbox (kind, payload, dedupe_key, run_at) SELECT "
         "'" STOA_UPDATES_FANOUT_KIND "', jsonb_build_object('update_id', "
         "$1::text), $2, created_at FROM admin.updates WHERE id = $1::uuid ON "
         "CONFLICT (kind, dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING",
         2},
    /* Taken first in each batch's transaction. */
    [JOBS_SQL_UPDATE_FANOUT_LOCK] =
        {"update_fanout_lock",
         "SELECT delivered_at IS NOT NULL FROM admin.updates WHERE id = "
         "$1::uuid FOR UPDATE",
         1},
    [JOBS_SQL_UPDATE_DELIVERED] =
        {"update_delivered",
         "UPDATE admin.updates SET delivered_at = now() WHERE id = $1::uuid AND "
         "delivered_at IS NULL",
         1},
    /* The recipient's address and wishes as they are now, not as they
     * were when the update was sent. */
    [JOBS_SQL_UPDATE_MAIL_TARGET] =
        {"update_mail_target",
         "SELECT u.email, u.name, " WANTS_PRODUCT_MAIL(
             "u") ", r.mailed_at IS NOT NULL, up.title, up.body, up.body_html, "
                  "up.action_required FROM admin.update_recipients r JOIN auth.users "
                  "u ON u.id = r.user_id JOIN admin.updates up ON up.id = r.update_id "
                  "WHERE r.update_id = $1::uuid AND r.user_id = $2::uuid AND "
                  "u.status = 'active'",
         2},
    [JOBS_SQL_UPDATE_MAILED] =
        {"update_mailed",
         "UPDATE admin.update_recipients SET mailed_at = now() WHERE update_id "
         "= $1::uuid AND user_id = $2::uuid AND mailed_at IS NULL",
         2},
    /* --- analytics (analytics.c) ------------------------------------- */
    /* Day partitions from the retention window's start to a week ahead:
     * every day an event may be accepted for has its partition. */
    [JOBS_SQL_ANALYTICS_PARTITIONS_CREATE] =
        {"analytics_partitions_create",
         "SELECT analytics.create_partitions(" ANALYTICS_TODAY
         " - $1::int, " ANALYTICS_TODAY " + 7)",
         1},
    /* The partitions of days wholly past retention (ingestion refuses
     * their events already). */
    [JOBS_SQL_ANALYTICS_PARTITIONS_DROP] =
        {"analytics_partitions_drop",
         "SELECT analytics.drop_partitions(((now() - $1::int * interval "
         "'1 day') AT TIME ZONE 'UTC')::date)",
         1},
    [JOBS_SQL_ANALYTICS_ROLLUPS_EXPIRE] =
        {"analytics_rollups_expire",
         "WITH h AS (DELETE FROM analytics.rollup_hourly WHERE bucket < "
         "now() - $1::int * interval '1 day'), d AS (DELETE FROM "
         "analytics.rollup_daily WHERE bucket < " ANALYTICS_TODAY " - $1::int),"
         " a AS (DELETE FROM analytics.rollup_actors WHERE day < " ANALYTICS_TODAY
         " - $1::int) DELETE FROM analytics.active_users "
         "WHERE day < " ANALYTICS_TODAY " - $1::int",
         1},
    /* The hours marked by ingestion, oldest first, taken off the list in
     * the rollup's transaction (a failed run leaves them there); an hour
     * has a mark per batch that wrote in it, and all of them go. Only
     * marks committed before this statement are seen, so it waits for no
     * ingestion: a batch still in flight keeps its marks for the next
     * run, and the recomputations after this statement see the events of
     * every batch whose marks it took. */
    [JOBS_SQL_ANALYTICS_ROLLUP_TAKE] =
        {"analytics_rollup_take",
         "WITH taken AS (DELETE FROM analytics.rollup_pending WHERE hour IN "
         "(SELECT DISTINCT hour FROM analytics.rollup_pending ORDER BY hour "
         "LIMIT $1::int) RETURNING hour) SELECT array_agg(DISTINCT "
         "hour)::text, count(DISTINCT hour) FROM taken",
         1},
    /* Each taken hour recomputed whole from its raw events, read once
     * (the events of the hours, narrowed to the columns the rollups use,
     * materialised for the three of them: re-reading the wide rows three
     * times was most of a rollup's cost): its buckets, its actors and its
     * active users. Running it again gives the same rows. */
    [JOBS_SQL_ANALYTICS_ROLLUP_HOURS] =
        {"analytics_rollup_hours",
         "WITH ev AS MATERIALIZED (SELECT e.event, h.hour, "
         "(e.ts AT TIME ZONE 'UTC')::date AS day, e.distinct_id, e.user_id "
         "FROM unnest($1::timestamptz[]) h(hour) JOIN analytics.events e ON "
         "e.ts >= h.hour AND e.ts < h.hour + interval '1 hour'), hourly AS "
         "(INSERT INTO analytics.rollup_hourly (event, bucket, events, "
         "uniques) SELECT event, hour, count(*), count(DISTINCT distinct_id) "
         "FROM ev GROUP BY event, hour ON CONFLICT (event, bucket) DO UPDATE "
         "SET events = excluded.events, uniques = excluded.uniques), actors AS "
         "(INSERT INTO analytics.rollup_actors (event, day, actor) SELECT "
         "DISTINCT event, day, md5(distinct_id)::uuid FROM ev WHERE "
         "distinct_id IS NOT NULL ON CONFLICT DO NOTHING) INSERT INTO "
         "analytics.active_users (day, user_id) SELECT DISTINCT day, user_id "
         "FROM ev WHERE user_id IS NOT NULL ON CONFLICT DO NOTHING",
         1},
    /* The days of the taken hours, from the hourly rows and the day's
     * actors (both already current in this transaction). */
    [JOBS_SQL_ANALYTICS_ROLLUP_DAILY] =
        {"analytics_rollup_daily",
         "WITH days AS (SELECT DISTINCT (x AT TIME ZONE 'UTC')::date AS day "
         "FROM unnest($1::timestamptz[]) x) INSERT INTO analytics.rollup_daily "
         "(event, bucket, events, uniques) SELECT r.event, d.day, "
         "sum(r.events)::bigint, (SELECT count(*) FROM analytics.rollup_actors "
         "a WHERE a.event = r.event AND a.day = d.day) FROM days d JOIN "
         "analytics.rollup_hourly r ON r.bucket >= d.day::timestamp AT TIME "
         "ZONE 'UTC' AND r.bucket < (d.day + 1)::timestamp AT TIME ZONE 'UTC' "
         "GROUP BY r.event, d.day ON CONFLICT (event, bucket) DO UPDATE SET "
         "events = excluded.events, uniques = excluded.uniques",
         1},
    /* The scrape's outbox figures per kind: open (not dead), dead, and
     * the age in seconds of the oldest job due now and not held by a
     * worker (0 when none): a stuck queue shows as a growing age. */
    [JOBS_SQL_METRICS_OUTBOX] =
        {"metrics_outbox",
         "SELECT kind, count(*) FILTER (WHERE dead_at IS NULL), count(*) "
         "FILTER (WHERE dead_at IS NOT NULL), coalesce(extract(epoch FROM "
         "now() - min(run_at) FILTER (WHERE dead_at IS NULL AND run_at <= "
         "now() AND (locked_until IS NULL OR locked_until < now()))), 0) FROM "
         "jobs.outbox WHERE done_at IS NULL GROUP BY kind ORDER BY kind",
         0},
    /* --- the entitlements fan-out (stoa/entitlements.h) ---------------- */
    /* The next batch of users after $3 (NULL: from the first) who may take
     * their entitlements from plan $1: everyone for the free plan; else
     * those with an entitling subscription on one of its prices, or on the
     * Stripe price $2 alone when given (walking
     * subscriptions_entitling_idx from $3). Each user's entitlements lock
     * is taken, in id order, so no webhook changes them until the commit
     * and two fan-outs never wait on each other in a cycle. */
    [JOBS_SQL_ENTITLEMENTS_FANOUT_USERS] =
        {"entitlements_fanout_users",
         "SELECT c.id, " STOA_ENTITLEMENTS_LOCK_SQL(
             "c.id") " FROM ((SELECT id FROM auth.users WHERE (SELECT key "
                     "FROM billing.plans WHERE id = $1::uuid) = 'free' AND "
                     "$2::text IS NULL AND status <> 'deleted' AND id > " FANOUT_AFTER
                     " ORDER BY id LIMIT $4::int) UNION (SELECT DISTINCT "
                     "s.user_id FROM billing.subscriptions s WHERE (SELECT key "
                     "FROM billing.plans WHERE id = $1::uuid) IS DISTINCT FROM "
                     "'free' AND s.status IN ('trialing', 'active', "
                     "'past_due') AND s.user_id > "
                     "" FANOUT_AFTER " AND s.stripe_price_id IN (SELECT "
                     "stripe_price_id FROM billing.prices WHERE CASE WHEN "
                     "$2::text IS NULL THEN plan_id = $1::uuid ELSE "
                     "stripe_price_id = $2 END) ORDER BY 1 LIMIT $4::int) "
                     "ORDER BY 1 LIMIT $4::int) c ORDER BY c.id",
         4},
    /* An entitlements.changed (as stoa_outbox_event_text writes it) for
     * each user of $1 whose entitlements now come from plan $2, read in
     * this statement, after FANOUT_USERS took the locks. The event id is
     * derived from the change ($3) and the user: a batch written again
     * after a crash adds nothing. */
    [JOBS_SQL_ENTITLEMENTS_FANOUT_EVENTS] =
        {"entitlements_fanout_events",
         "INSERT INTO jobs.outbox (kind, payload, dedupe_key) SELECT 'event', "
         "jsonb_build_object('id', 'evt_' || ev.id, 'type', "
         "'entitlements.changed', 'created', extract(epoch FROM "
         "now())::bigint, 'data', jsonb_build_object('user_id', u.id, "
         "'entitlements', ev.ent)), ev.id FROM auth.users u CROSS JOIN LATERAL "
         "(SELECT md5($3 || u.id::text)::uuid::text AS id, "
         "(" STOA_ENTITLEMENTS_SQL(
             "u.id") ")::jsonb AS ent) ev WHERE u.id = ANY ($1::uuid[]) AND "
                     "u.status <> 'deleted' AND "
                     "ev.ent->>'plan' = (SELECT key FROM billing.plans WHERE id "
                     "= $2::uuid) ON CONFLICT (kind, dedupe_key) WHERE "
                     "dedupe_key IS NOT NULL DO NOTHING",
         3},
};
const size_t jobs_statements_len = STOA_ARRAY_LEN(jobs_statements);
