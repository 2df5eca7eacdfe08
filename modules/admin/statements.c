/* statements.c - every query of the admin pool. */
#include "admin.h"

const stoa_db_statement_t admin_statements[ADMIN_SQL_COUNT] = {
    [ADMIN_SQL_WEBHOOK_INSERT] = {"webhook_insert",
     "INSERT INTO admin.webhook_endpoints (url, description, events, secret, "
     "created_by) VALUES ($1, $2, $3::text[], $4, $5::uuid) RETURNING id, "
     STOA_DB_TS("created_at"),
     5},
    /* Oldest first; the cursor is (created_at in microseconds, id) of the
     * last row of the previous page. */
    [ADMIN_SQL_WEBHOOK_LIST] = {"webhook_list",
     "SELECT id, url, description, array_to_json(events)::text, "
     STOA_DB_TS("created_at") ", " STOA_DB_TS("disabled_at") ", disabled_reason, "
     STOA_DB_TS("failing_since") ", " STOA_DB_TS("last_success_at") ", (extract(epoch FROM "
     "created_at) * 1000000)::bigint FROM admin.webhook_endpoints WHERE "
     "deleted_at IS NULL AND ($1::bigint IS NULL OR (created_at, id) > "
     "(timestamptz 'epoch' + $1::bigint * interval '1 microsecond', "
     "$2::uuid)) ORDER BY created_at, id LIMIT $3::int",
     3},
    [ADMIN_SQL_WEBHOOK_DELETE] = {"webhook_delete",
     "UPDATE admin.webhook_endpoints SET deleted_at = now() WHERE id = "
     "$1::uuid AND deleted_at IS NULL RETURNING id",
     1},
    [ADMIN_SQL_WEBHOOK_ROTATE] = {"webhook_rotate",
     "UPDATE admin.webhook_endpoints SET previous_secret = secret, "
     "previous_secret_until = now() + make_interval(secs => $3::int), "
     "secret = $2 WHERE id = $1::uuid AND deleted_at IS NULL RETURNING "
     STOA_DB_TS("previous_secret_until"),
     3},
    [ADMIN_SQL_WEBHOOK_EXISTS] = {"webhook_exists",
     "SELECT 1 FROM admin.webhook_endpoints WHERE id = $1::uuid AND "
     "deleted_at IS NULL",
     1},
    /* Newest first; the cursor is the last id of the previous page. */
    [ADMIN_SQL_WEBHOOK_DELIVERIES] = {"webhook_deliveries",
     "SELECT id, event_id, event_type, attempt, " STOA_DB_TS("at") ", status, "
     "latency_ms, error FROM admin.webhook_deliveries WHERE endpoint_id = "
     "$1::uuid AND ($2::bigint IS NULL OR id < $2::bigint) ORDER BY id DESC "
     "LIMIT $3::int",
     3},
    /* Newest first by id (it grows with time); the cursor is the last id
     * of the previous page. Each filter leads an index ending in id
     * (migration 0022), so a page reads only what it shows. `to` is
     * exclusive. */
    [ADMIN_SQL_AUDIT_LOG] = {"audit_log",
     "SELECT id, " STOA_DB_TS("at") ", actor_id, actor, action, target_id, "
     "host(ip), request_id, details::text FROM admin.audit_log WHERE "
     "($1::uuid IS NULL OR actor_id = $1::uuid) AND ($2::text IS NULL OR "
     "action = $2) AND ($3::uuid IS NULL OR target_id = $3::uuid) AND "
     "($4::timestamptz IS NULL OR at >= $4::timestamptz) AND "
     "($5::timestamptz IS NULL OR at < $5::timestamptz) AND ($6::bigint IS "
     "NULL OR id < $6::bigint) ORDER BY id DESC LIMIT $7::int",
     7},
};
const size_t admin_statements_len = STOA_ARRAY_LEN(admin_statements);
