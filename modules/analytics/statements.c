/* statements.c - every query of the analytics pool. */
#include "analytics.h"

#define KEY_COLUMNS                                                            \
    "id, name, prefix, created_by, " STOA_DB_TS("created_at") ", " STOA_DB_TS( \
        "revoked_at") ", (extract(epoch FROM created_at) * 1000000)::bigint"

const stoa_db_statement_t analytics_statements[ANALYTICS_SQL_COUNT] = {
    /* Before a batch's rows are copied, in its transaction: the
     * client-given ids ($1, with their times $2) not seen before claim
     * their row in event_ids (a concurrent batch with the same id waits on
     * that row and then skips it, in key order, so two batches never wait
     * on each other crosswise), and the hours of the fresh events (and of
     * $3, one time per hour of the rows with generated ids) are marked
     * for the rollup. Marks are plain rows: they wait for nobody, and the
     * rollup only takes those committed before it began (0028). Answers
     * the ids that are fresh. */
    [ANALYTICS_SQL_EVENTS_CLAIM] =
        {"events_claim",
         "WITH fresh AS (INSERT INTO analytics.event_ids (id, ts) SELECT id, "
         "ts FROM unnest($1::uuid[], $2::timestamptz[]) AS g(id, ts) ORDER BY "
         "id ON CONFLICT (id) DO NOTHING RETURNING id, ts), hours AS (INSERT "
         "INTO analytics.rollup_pending (hour) SELECT DISTINCT "
         "date_trunc('hour', t.ts) FROM (SELECT ts FROM fresh UNION ALL "
         "SELECT unnest($3::timestamptz[])) AS t(ts)) SELECT id FROM fresh",
         3},
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
};
const size_t analytics_statements_len = STOA_ARRAY_LEN(analytics_statements);
