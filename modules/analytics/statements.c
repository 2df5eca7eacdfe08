/* statements.c - every query of the analytics pool. */
#include "analytics.h"

#define KEY_COLUMNS                                                            \
    "id, name, prefix, created_by, " STOA_DB_TS("created_at") ", " STOA_DB_TS( \
        "revoked_at") ", (extract(epoch FROM created_at) * 1000000)::bigint"

/* The dashboard's range as its statements take it: $1 and $2 are the
 * bounds in epoch seconds (from inclusive, to exclusive), checked and
 * defaulted by ANALYTICS_SQL_DASHBOARD_RANGE. */
#define DASHBOARD_RANGE                                                        \
    "r AS (SELECT to_timestamp($1::bigint) AS f, to_timestamp($2::bigint) "    \
    "AS t)"
/* The range's bounds and the time of the answer, as the API shows times. */
#define DASHBOARD_SHOWN STOA_DB_TS("f") ", " STOA_DB_TS("t")
#define DASHBOARD_AS_OF STOA_DB_TS("now()")
/* Every UTC day the range touches, from the day of `from` to the day of
 * the last instant before `to`. */
#define DASHBOARD_DAYS                                                         \
    "days AS (SELECT d.first + i AS day FROM (SELECT (f AT TIME ZONE "         \
    "'UTC')::date AS first, ((t - interval '1 microsecond') AT TIME ZONE "     \
    "'UTC')::date AS last FROM r) d, generate_series(0, d.last - d.first) i)"
/* num / den rounded to 4 decimals, 0 when den is 0 (nothing to divide). */
#define DASHBOARD_RATE(num, den)                                               \
    "CASE WHEN " den " = 0 THEN 0 ELSE round(" num "::numeric / " den          \
    ", 4)::float8 END"
/* A subscription's end, for one whose status is canceled: the end of the
 * period it was cancelled at (Stripe's canceled_at is then the time of the
 * request, not of the end), else its canceled_at, else the last change of
 * the row. NULL for a subscription that has not ended. */
#define DASHBOARD_ENDED_AT                                                     \
    "CASE WHEN s.status = 'canceled' THEN CASE WHEN s.cancel_at_period_end "   \
    "AND s.current_period_end IS NOT NULL THEN s.current_period_end ELSE "     \
    "coalesce(s.canceled_at, s.updated_at) END END"

const stoa_db_statement_t analytics_statements[ANALYTICS_SQL_COUNT] = {
    /* Before a batch's rows are copied, in its transaction: the
     * client-given ids ($1) not seen before claim their row in event_ids,
     * stamped with the time of receipt (a concurrent batch with the same
     * id waits on that row and then skips it; the pool sends the ids in
     * key order, and the insert takes them in the array's order, so two
     * batches never wait on each other crosswise), and the hours of the
     * batch's events ($2: one time in each, worked out by the pool) are
     * marked for the rollup. Marks are plain rows: they wait for nobody, and
     * the rollup only takes those committed before it began (0028); an hour
     * marked by a batch of repeats is recomputed once more, to the same
     * figures. Answers the ids that are fresh. Parsing every event's time
     * again here, and sorting them into hours, cost Postgres a quarter of
     * this statement. */
    [ANALYTICS_SQL_EVENTS_CLAIM] =
        {"events_claim",
         "WITH fresh AS (INSERT INTO analytics.event_ids (id, ts) SELECT id, "
         "now() FROM unnest($1::uuid[]) AS g(id) ON CONFLICT (id) "
         "DO NOTHING RETURNING id), hours AS (INSERT INTO "
         "analytics.rollup_pending (hour) SELECT DISTINCT date_trunc('hour', "
         "h) FROM unnest($2::timestamptz[]) h) SELECT id FROM fresh",
         2},
    [ANALYTICS_SQL_INGEST_KEY_FIND] =
        {"ingest_key_find",
         "SELECT id FROM admin.ingest_keys WHERE key_hash = $1::bytea AND "
         "revoked_at IS NULL",
         1},
    [ANALYTICS_SQL_INGEST_KEY_INSERT] =
        {"ingest_key_insert",
         "INSERT INTO admin.ingest_keys (name, prefix, key_hash, created_by) "
         "VALUES ($1, $2, $3::bytea, $4::uuid) RETURNING " KEY_COLUMNS,
         4},
    /* Oldest first; the cursor is (created_at in microseconds, id) of the
     * last key shown. Revoked keys stay listed, with revoked_at. */
    [ANALYTICS_SQL_INGEST_KEY_LIST] =
        {"ingest_key_list",
         "SELECT " KEY_COLUMNS " FROM admin.ingest_keys WHERE $1::bigint IS "
         "NULL OR (created_at, id) > (timestamptz 'epoch' + $1::bigint * "
         "interval '1 microsecond', $2::uuid) ORDER BY created_at, id LIMIT "
         "$3::int",
         3},
    [ANALYTICS_SQL_INGEST_KEY_REVOKE] =
        {"ingest_key_revoke",
         "UPDATE admin.ingest_keys SET revoked_at = now() WHERE id = $1::uuid "
         "AND revoked_at IS NULL RETURNING id",
         1},
    /* Metrics read rollups only. $1 event, $2 from, $3 to (half-open). */
    [ANALYTICS_SQL_METRICS_HOURLY] =
        {"metrics_hourly",
         "SELECT " STOA_DB_TS(
             "bucket") ", events, uniques FROM "
                       "analytics.rollup_hourly WHERE event = $1 AND bucket >= "
                       "$2::timestamptz AND bucket < $3::timestamptz ORDER BY bucket",
         3},
    /* Days, weeks (ISO, from Monday) or months ($4): counts are sums of
     * the daily rollups; uniques are the distinct actors of the period's
     * days within the range, so a week's visitor is counted once however
     * many days they came. */
    [ANALYTICS_SQL_METRICS_DAILY] =
        {"metrics_daily",
         "WITH c AS (SELECT date_trunc($4, bucket::timestamp)::date AS t, "
         "sum(events)::bigint AS n FROM analytics.rollup_daily WHERE event = "
         "$1 AND bucket >= ($2::timestamptz AT TIME ZONE 'UTC')::date AND "
         "bucket < ($3::timestamptz AT TIME ZONE 'UTC')::date GROUP BY 1), u "
         "AS (SELECT date_trunc($4, day::timestamp)::date AS t, count(DISTINCT "
         "actor) AS n FROM analytics.rollup_actors WHERE event = $1 AND day >= "
         "($2::timestamptz AT TIME ZONE 'UTC')::date AND day < ($3::timestamptz "
         "AT TIME ZONE 'UTC')::date GROUP BY 1) SELECT to_char(c.t, "
         "'YYYY-MM-DD\"T00:00:00Z\"'), c.n, coalesce(u.n, 0) FROM c LEFT "
         "JOIN u ON u.t = c.t ORDER BY c.t",
         4},
    /* The export's cursor, in its own transaction: rows leave in chunks
     * as the client takes them, so no range sits whole in memory. */
    [ANALYTICS_SQL_EXPORT_OPEN] =
        {"export_open",
         "DECLARE analytics_export NO SCROLL CURSOR FOR SELECT id, "
         "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
         "event, distinct_id, user_id, properties::text FROM analytics.events "
         "WHERE ts >= $1::timestamptz AND ts < $2::timestamptz AND ($3::text "
         "IS NULL OR event = $3) ORDER BY ts, id",
         3},
    [ANALYTICS_SQL_EXPORT_FETCH] = {"export_fetch",
                                    "FETCH FORWARD " ANALYTICS_EXPORT_CHUNK
                                    " FROM analytics_export",
                                    0},
    /* --- the dashboard (docs/analytics.md defines each figure) -------- */
    /* $1 from, $2 to (either NULL: the default of the last 30 days, to the
     * end of today, UTC), checked here so that the others get good bounds:
     * in order, at most two years apart, not before year 1. */
    [ANALYTICS_SQL_DASHBOARD_RANGE] =
        {"dashboard_range",
         "WITH b AS (SELECT $1::timestamptz AS f, coalesce($2::timestamptz, "
         "date_trunc('day', now()) + interval '1 day') AS t), r AS (SELECT "
         "coalesce(f, t - interval '30 days') AS f, t FROM b) SELECT "
         "extract(epoch FROM f)::bigint, extract(epoch FROM t)::bigint, " DASHBOARD_SHOWN
         ", f < t, t <= f + interval '2 years', f >= "
         "timestamptz '0001-01-01 00:00:00+00', " DASHBOARD_AS_OF " FROM r",
         2},
    /* Accounts made in the range, erased ones included (they signed up),
     * by UTC day, every day present. Reads users_created_at_idx. */
    [ANALYTICS_SQL_DASHBOARD_SIGNUPS] =
        {"dashboard_signups",
         "WITH " DASHBOARD_RANGE ", " DASHBOARD_DAYS ", c AS (SELECT "
         "(u.created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM "
         "auth.users u, r WHERE u.created_at >= r.f AND u.created_at < r.t "
         "GROUP BY 1) SELECT coalesce(sum(c.n), 0)::bigint, "
         "coalesce(json_agg(json_build_object('day', to_char(days.day, "
         "'YYYY-MM-DD'), 'count', coalesce(c.n, 0)) ORDER BY days.day), "
         "'[]') FROM days LEFT JOIN c ON c.day = days.day",
         2},
    /* Distinct signed-in users on the range's last day, its last 7 and
     * its last 30 days, from the rollup's per-day users (a range scan of
     * its primary key, never raw events). Each user's latest day in the
     * 30 says which windows they are in: one grouping, not three distinct
     * counts. */
    [ANALYTICS_SQL_DASHBOARD_ACTIVE] =
        {"dashboard_active",
         "WITH " DASHBOARD_RANGE ", l AS (SELECT ((t - interval '1 "
         "microsecond') AT TIME ZONE 'UTC')::date AS d FROM r), u AS (SELECT "
         "max(a.day) AS last FROM analytics.active_users a, l WHERE a.day > "
         "l.d - 30 AND a.day <= l.d GROUP BY a.user_id) SELECT to_char(l.d, "
         "'YYYY-MM-DD'), count(u.last) FILTER (WHERE u.last = l.d), "
         "count(u.last) FILTER (WHERE u.last > l.d - 7), count(u.last) FROM "
         "l LEFT JOIN u ON true GROUP BY l.d",
         2},
    /* The subscriptions as they stand: paying customers (active or
     * past_due), trialing ones, and per currency the MRR and ARPU. Sums
     * are kept in twelfths of a minor unit (a monthly price counts 12
     * times its amount, a yearly one its amount), so the one rounding, to
     * the nearest minor unit with halves up, happens at the end. */
    [ANALYTICS_SQL_DASHBOARD_SUBSCRIPTIONS] =
        {"dashboard_subscriptions",
         "WITH s AS (SELECT s.stripe_customer_id, s.status, pr.currency, "
         "CASE pr.interval WHEN 'year' THEN pr.amount ELSE pr.amount * 12 "
         "END AS twelfths FROM billing.subscriptions s LEFT JOIN "
         "billing.prices pr ON pr.stripe_price_id = s.stripe_price_id WHERE "
         "s.status IN ('active', 'past_due', 'trialing')), c AS (SELECT "
         "currency, sum(twelfths) AS twelfths, count(DISTINCT "
         "stripe_customer_id) AS n FROM s WHERE status <> 'trialing' AND "
         "currency IS NOT NULL GROUP BY currency) SELECT (SELECT "
         "count(DISTINCT stripe_customer_id) FROM s WHERE status <> "
         "'trialing'), (SELECT count(DISTINCT stripe_customer_id) FROM s "
         "WHERE status = 'trialing'), (SELECT coalesce(json_agg("
         "json_build_object('currency', currency, 'amount', round(twelfths "
         "/ 12.0)::bigint) ORDER BY currency), '[]') FROM c), (SELECT "
         "coalesce(json_agg(json_build_object('currency', currency, "
         "'amount', round(twelfths / (12.0 * n))::bigint) ORDER BY "
         "currency), '[]') FROM c)",
         0},
    /* Of the subscriptions active at `from` (made before it, out of any
     * trial by then, not ended by then), how many ended before `to`. */
    [ANALYTICS_SQL_DASHBOARD_CHURN] =
        {"dashboard_churn",
         "WITH " DASHBOARD_RANGE ", base AS (SELECT " DASHBOARD_ENDED_AT
         " AS ended_at FROM billing.subscriptions s, r WHERE s.created_at < "
         "r.f AND s.status NOT IN ('trialing', 'incomplete', "
         "'incomplete_expired') AND (s.trial_end IS NULL OR s.trial_end <= "
         "r.f)), x AS (SELECT count(*) FILTER (WHERE ended_at < (SELECT t "
         "FROM r)) AS ended, count(*) AS n FROM base WHERE ended_at IS NULL "
         "OR ended_at >= (SELECT f FROM r)) SELECT " DASHBOARD_RATE(
             "ended", "n") ", ended, n FROM x",
         2},
    /* Invoices due in the range (made in it, asking a payment, neither
     * draft nor void) and those of them whose payment failed: a recorded
     * invoice.payment_failed event (stripe_events_failed_invoice_idx,
     * migration 0027) or uncollectible. */
    [ANALYTICS_SQL_DASHBOARD_PAYMENTS] =
        {"dashboard_payments",
         "WITH " DASHBOARD_RANGE ", due AS (SELECT i.stripe_invoice_id, "
         "i.status FROM billing.invoices i, r WHERE i.created >= r.f AND "
         "i.created < r.t AND i.status IN ('open', 'paid', 'uncollectible') "
         "AND i.amount_due > 0), x AS (SELECT count(*) FILTER (WHERE "
         "due.status = 'uncollectible' OR EXISTS (SELECT 1 FROM "
         "billing.stripe_events e WHERE e.type = 'invoice.payment_failed' "
         "AND (e.payload #>> '{data,object,id}') = due.stripe_invoice_id)) "
         "AS failed, count(*) AS n FROM due) SELECT " DASHBOARD_RATE(
             "failed", "n") ", failed, n FROM x",
         2},
    /* Paid invoices' amount_paid per currency over the range and per UTC
     * day of the invoice; each day lists every currency of the range,
     * zeros included. Reads invoices_created_idx. */
    [ANALYTICS_SQL_DASHBOARD_REVENUE] =
        {"dashboard_revenue",
         "WITH " DASHBOARD_RANGE ", " DASHBOARD_DAYS ", p AS (SELECT "
         "(i.created AT TIME ZONE 'UTC')::date AS day, i.currency, "
         "sum(i.amount_paid) AS amount FROM billing.invoices i, r WHERE "
         "i.created >= r.f AND i.created < r.t AND i.status = 'paid' GROUP "
         "BY 1, 2), c AS (SELECT currency, sum(amount) AS amount FROM p "
         "GROUP BY currency), d AS (SELECT days.day, coalesce(json_agg("
         "json_build_object('currency', c.currency, 'amount', coalesce("
         "p.amount, 0)::bigint) ORDER BY c.currency) FILTER (WHERE "
         "c.currency IS NOT NULL), '[]') AS amounts FROM days LEFT JOIN c "
         "ON true LEFT JOIN p ON p.day = days.day AND p.currency = c.currency "
         "GROUP BY days.day) SELECT (SELECT coalesce(json_agg("
         "json_build_object('currency', currency, 'amount', amount::bigint) "
         "ORDER BY currency), '[]') FROM c), (SELECT json_agg("
         "json_build_object('day', to_char(day, 'YYYY-MM-DD'), 'amounts', "
         "amounts) ORDER BY day) FROM d)",
         2},
};
const size_t analytics_statements_len = STOA_ARRAY_LEN(analytics_statements);
