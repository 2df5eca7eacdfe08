/* statements.c - every query of the admin pool. */
#include "admin.h"
#include "stoa/updates.h"

#define EPOCH_US(col) "(extract(epoch FROM " col ") * 1000000)::bigint"
#define FROM_US(p)                                                             \
    "(timestamptz 'epoch' + " p "::bigint * interval '1 microsecond')"

/* A user's current subscription: a live one first, else the latest (as
 * GET /v1/billing/subscription shows it). */
#define CURRENT_SUBSCRIPTION                                                   \
    "LEFT JOIN LATERAL (SELECT p.key AS plan, s.status FROM "                  \
    "billing.subscriptions s LEFT JOIN billing.prices pr ON "                  \
    "pr.stripe_price_id = s.stripe_price_id LEFT JOIN billing.plans p ON "     \
    "p.id = pr.plan_id WHERE s.user_id = u.id ORDER BY (s.status IN "          \
    "('trialing', 'active', 'past_due')) DESC, s.updated_at DESC LIMIT 1) "    \
    "cur ON true "
#define USER_COLUMNS                                                                        \
    "u.id, u.email, u.name, u.role, u.status, " STOA_DB_TS("u.created_at") ", " STOA_DB_TS( \
        "u.email_verified_at") ", cur.plan, cur.status, " EPOCH_US("u.created_at")
/* Newest first. The time bounds and the cursor are written as ranges of
 * (created_at, id), never "$n IS NULL OR ...", so that a generic plan
 * still walks the (created_at, id) index from the right place; created_to
 * with no cursor is the position (created_to, the least uuid). $1 role,
 * $2 status, $3 plan, $4 created_from, $5 created_to, $6/$7 cursor, $8
 * the fetch. */
#define USERS_LIST_SQL(email_condition)                                                          \
    "SELECT " USER_COLUMNS " FROM auth.users u " CURRENT_SUBSCRIPTION                            \
    "WHERE ($1::text IS NULL OR u.role = $1) AND ($2::text IS NULL OR "                          \
    "u.status = $2) AND ($3::text IS NULL OR cur.plan = $3) AND "                                \
    "u.created_at >= coalesce($4::timestamptz, '-infinity') AND "                                \
    "(u.created_at, u.id) < (coalesce(" FROM_US(                                                 \
        "$6") ", $5::timestamptz, "                                                              \
              "'infinity'), coalesce($7::uuid, '00000000-0000-0000-0000-000000000000')) "        \
              "AND ($5::timestamptz IS NULL OR u.created_at < $5::timestamptz) " email_condition \
              "ORDER BY u.created_at DESC, u.id DESC LIMIT $8::int"

/* The size of an audience: its active accounts. */
#define AUDIENCE_SQL(pred)                                                     \
    "SELECT count(*) FILTER (WHERE " STOA_AUDIENCE_SQL_ACTIVE "), count(*) "   \
    "FROM auth.users u WHERE " pred
#define UPDATE_COLUMNS                                                                    \
    "up.id, up.title, up.action_required, up.audience::text, up.created_by, " STOA_DB_TS( \
        "up.created_at") ", up.recipients, up.delivered, " STOA_DB_TS("up.delivered_at") ", " EPOCH_US("up.created_at")
/* A feed item: the update as its recipient sees it. */
#define FEED_COLUMNS                                                                              \
    "up.id, up.title, up.body, up.action_required, " STOA_DB_TS("up.created_at") ", " STOA_DB_TS( \
        "r.read_at") ", " STOA_DB_TS("r.done_at") ", " EPOCH_US("r.posted_at")
/* Newest first, from update_recipients_feed_idx (or its unread part). */
#define FEED_SQL(condition)                                                          \
    "SELECT " FEED_COLUMNS " FROM admin.update_recipients r JOIN "                   \
    "admin.updates up ON up.id = r.update_id WHERE r.user_id = $1::uuid " condition  \
    "AND (r.posted_at, r.update_id) < (coalesce(" FROM_US(                           \
        "$2") ", 'infinity'), coalesce($3::uuid, "                                   \
              "'00000000-0000-0000-0000-000000000000')) ORDER BY r.posted_at DESC, " \
              "r.update_id DESC LIMIT $4::int"
/* Marks the caller's item and answers it as the feed shows it. */
#define FEED_MARK_SQL(set)                                                     \
    "WITH r AS (UPDATE admin.update_recipients SET " set " WHERE update_id = " \
    "$1::uuid AND user_id = $2::uuid RETURNING *) SELECT " FEED_COLUMNS        \
    " FROM r JOIN admin.updates up ON up.id = r.update_id"

const stoa_db_statement_t admin_statements[ADMIN_SQL_COUNT] = {
    [ADMIN_SQL_WEBHOOK_INSERT] =
        {"webhook_insert",
         "INSERT INTO admin.webhook_endpoints (url, description, events, secret, "
         "created_by) VALUES ($1, $2, $3::text[], $4, $5::uuid) RETURNING id, " STOA_DB_TS(
             "created_at"),
         5},
    /* Oldest first; the cursor is (created_at in microseconds, id) of the
     * last row of the previous page. */
    [ADMIN_SQL_WEBHOOK_LIST] =
        {"webhook_list",
         "SELECT id, url, description, array_to_json(events)::text, " STOA_DB_TS("created_at") ", " STOA_DB_TS("disabled_at") ", disabled_reason, " STOA_DB_TS(
             "failing_since") ", " STOA_DB_TS("last_success_at") ", (extract(epoch FROM "
                                                                 "created_at) * 1000000)::bigint FROM admin.webhook_endpoints WHERE "
                                                                 "deleted_at IS NULL AND ($1::bigint IS NULL OR (created_at, id) > "
                                                                 "(timestamptz 'epoch' + $1::bigint * interval '1 microsecond', "
                                                                 "$2::uuid)) ORDER BY created_at, id LIMIT $3::int",
         3},
    [ADMIN_SQL_WEBHOOK_DELETE] =
        {"webhook_delete",
         "UPDATE admin.webhook_endpoints SET deleted_at = now() WHERE id = "
         "$1::uuid AND deleted_at IS NULL RETURNING id",
         1},
    [ADMIN_SQL_WEBHOOK_ROTATE] =
        {"webhook_rotate",
         "UPDATE admin.webhook_endpoints SET previous_secret = secret, "
         "previous_secret_until = now() + make_interval(secs => $3::int), "
         "secret = $2 WHERE id = $1::uuid AND deleted_at IS NULL RETURNING " STOA_DB_TS(
             "previous_secret_until"),
         3},
    [ADMIN_SQL_WEBHOOK_EXISTS] =
        {"webhook_exists",
         "SELECT 1 FROM admin.webhook_endpoints WHERE id = $1::uuid AND "
         "deleted_at IS NULL",
         1},
    /* Newest first; the cursor is the last id of the previous page. */
    [ADMIN_SQL_WEBHOOK_DELIVERIES] =
        {"webhook_deliveries",
         "SELECT id, event_id, event_type, attempt, " STOA_DB_TS(
             "at") ", status, "
                   "latency_ms, error FROM admin.webhook_deliveries WHERE endpoint_id = "
                   "$1::uuid AND ($2::bigint IS NULL OR id < $2::bigint) ORDER BY id DESC "
                   "LIMIT $3::int",
         3},
    /* Newest first by id (it grows with time); the cursor is the last id
     * of the previous page. Each filter leads an index ending in id
     * (migration 0022), so a page reads only what it shows. `to` is
     * exclusive. */
    [ADMIN_SQL_AUDIT_LOG] =
        {"audit_log",
         "SELECT id, " STOA_DB_TS(
             "at") ", actor_id, actor, action, target_id, "
                   "host(ip), request_id, details::text FROM admin.audit_log WHERE "
                   "($1::uuid IS NULL OR actor_id = $1::uuid) AND ($2::text IS NULL OR "
                   "action = $2) AND ($3::uuid IS NULL OR target_id = $3::uuid) AND "
                   "($4::timestamptz IS NULL OR at >= $4::timestamptz) AND "
                   "($5::timestamptz IS NULL OR at < $5::timestamptz) AND ($6::bigint IS "
                   "NULL OR id < $6::bigint) ORDER BY id DESC LIMIT $7::int",
         7},
    [ADMIN_SQL_USERS_LIST] = {"users_list", USERS_LIST_SQL(""), 8},
    /* A statement of its own, so that its plan may start from the email
     * index (users_email_prefix_idx: byte order, so the prefix is the
     * range [prefix, prefix || U+10FFFF)). */
    [ADMIN_SQL_USERS_LIST_BY_EMAIL] =
        {"users_list_by_email",
         USERS_LIST_SQL(
             "AND lower(u.email) ~>=~ lower($9::text) AND "
             "lower(u.email) ~<~ (lower($9::text) || chr(1114111)) "),
         9},
    /* The last login is the audit log's (sessions are deleted a month
     * after they expire; the log keeps every login with its address). */
    [ADMIN_SQL_USER_DETAIL] =
        {"user_detail",
         "SELECT " USER_COLUMNS ", (SELECT count(*) FROM auth.sessions s WHERE "
         "s.user_id = u.id AND s.api_key_id IS NULL AND s.revoked_at IS NULL AND "
         "s.expires_at > now()), " STOA_DB_TS(
             "ll.at") ", host(ll.ip), EXISTS "
                      "(SELECT 1 FROM auth.mfa_totp m WHERE m.user_id = u.id AND "
                      "m.confirmed_at IS NOT NULL), (SELECT count(*) FROM auth.api_keys k "
                      "WHERE k.user_id = u.id AND k.revoked_at IS NULL AND (k.expires_at IS "
                      "NULL OR k.expires_at > now())) FROM auth.users u " CURRENT_SUBSCRIPTION
                      "LEFT JOIN LATERAL (SELECT a.at, a.ip FROM admin.audit_log a WHERE "
                      "a.target_id = u.id AND a.action = 'login.succeeded' ORDER BY a.at DESC "
                      "LIMIT 1) ll ON true WHERE u.id = $1::uuid",
         1},
    [ADMIN_SQL_AUDIENCE_USER_IDS] = {"audience_user_ids",
                                     AUDIENCE_SQL(STOA_AUDIENCE_SQL_USER_IDS(
                                         "$1::uuid[]")),
                                     1},
    [ADMIN_SQL_AUDIENCE_ROLE] =
        {"audience_role", AUDIENCE_SQL(STOA_AUDIENCE_SQL_ROLE("$1::text")), 1},
    [ADMIN_SQL_AUDIENCE_PLAN] =
        {"audience_plan", AUDIENCE_SQL(STOA_AUDIENCE_SQL_PLAN("$1::text")), 1},
    [ADMIN_SQL_AUDIENCE_ALL] = {"audience_all",
                                AUDIENCE_SQL(STOA_AUDIENCE_SQL_ALL("$1::text")),
                                1},
    [ADMIN_SQL_PLAN_KEY_EXISTS] = {"plan_key_exists",
                                   "SELECT 1 FROM billing.plans WHERE key = $1",
                                   1},
    [ADMIN_SQL_UPDATE_INSERT] =
        {"update_insert",
         "INSERT INTO admin.updates (title, body, body_html, audience, "
         "action_required, created_by, recipients) VALUES ($1, $2, $3, "
         "$4::jsonb, $5::boolean, $6::uuid, $7::int) RETURNING id, " STOA_DB_TS(
             "created_at"),
         7},
    /* Newest first, as the users list pages. */
    [ADMIN_SQL_UPDATES_LIST] =
        {"updates_list",
         "SELECT " UPDATE_COLUMNS
         " FROM admin.updates up WHERE (up.created_at, "
         "up.id) < (coalesce(" FROM_US(
             "$1") ", 'infinity'), coalesce($2::uuid, "
                   "'00000000-0000-0000-0000-000000000000')) ORDER BY up.created_at DESC, "
                   "up.id DESC LIMIT $3::int",
         3},
    /* The counts are read from the recipients (update_recipients' primary
     * key leads with the update). */
    [ADMIN_SQL_UPDATE_DETAIL] =
        {"update_detail",
         "SELECT " UPDATE_COLUMNS ", up.body, c.mailed, c.read, c.done FROM "
         "admin.updates up CROSS JOIN LATERAL (SELECT count(r.mailed_at) AS "
         "mailed, count(r.read_at) AS read, count(r.done_at) AS done FROM "
         "admin.update_recipients r WHERE r.update_id = up.id) c WHERE up.id = "
         "$1::uuid",
         1},
    [ADMIN_SQL_FEED] = {"feed", FEED_SQL(""), 4},
    [ADMIN_SQL_FEED_UNREAD] = {"feed_unread",
                               FEED_SQL("AND r.read_at IS NULL "), 4},
    [ADMIN_SQL_FEED_READ] =
        {"feed_read", FEED_MARK_SQL("read_at = coalesce(read_at, now())"), 2},
    /* Done is read too. */
    [ADMIN_SQL_FEED_DONE] =
        {"feed_done",
         FEED_MARK_SQL("done_at = coalesce(done_at, now()), read_at = "
                       "coalesce(read_at, now())"),
         2},
};
const size_t admin_statements_len = STOA_ARRAY_LEN(admin_statements);
