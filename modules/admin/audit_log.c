/* audit_log.c - GET /v1/admin/audit-log: the append-only record of every
 * auth event and admin action, newest first, filtered by actor, action,
 * target and time. */
#include <string.h>

#include "admin.h"
#include "stoa/crypto.h"
#include "stoa/format.h"

static const stoa_column_t audit_columns[] = {
    {"id", AUDIT_COL_ID, STOA_COLUMN_INTEGER},
    {"at", AUDIT_COL_AT, STOA_COLUMN_TEXT},
    {"actor_id", AUDIT_COL_ACTOR_ID, STOA_COLUMN_TEXT},
    {"actor", AUDIT_COL_ACTOR, STOA_COLUMN_TEXT},
    {"action", AUDIT_COL_ACTION, STOA_COLUMN_TEXT},
    {"target_id", AUDIT_COL_TARGET_ID, STOA_COLUMN_TEXT},
    {"ip", AUDIT_COL_IP, STOA_COLUMN_TEXT},
    {"request_id", AUDIT_COL_REQUEST_ID, STOA_COLUMN_TEXT},
    {"details", AUDIT_COL_DETAILS, STOA_COLUMN_JSON},
};

/* The request field behind each parameter of the statement. */
static const char *const audit_fields[] = {"actor", "action", "target", "from",
                                           "to",    "cursor", NULL};

/* A uuid filter: absent (NULL) or valid; else a field error. */
static const char *uuid_filter(stoa_request_t *req, const char *key)
{
    const char *v = stoa_request_query(req, key);
    if (v && !stoa_uuid_valid(v)) {
        stoa_request_field_error(req, key, "invalid_uuid");
        return NULL;
    }
    return v;
}

static const char *time_filter(stoa_request_t *req, const char *key)
{
    const char *v = stoa_request_query(req, key);
    if (v && !stoa_time_shape_valid(v, true)) {
        stoa_request_field_error(req, key, "invalid_time");
        return NULL;
    }
    return v;
}

int admin_audit_log(stoa_request_t *req)
{
    static const char *const allowed[] = {"actor", "action", "target", "from",
                                          "to",    "limit",  "cursor", NULL};
    stoa_request_query_reject_unknown(req, allowed);
    const char *actor = uuid_filter(req, "actor");
    const char *target = uuid_filter(req, "target");
    const char *from = time_filter(req, "from");
    const char *to = time_filter(req, "to");
    /* Actions are our own dotted words ("login.failed"). */
    const char *action = stoa_request_query(req, "action");
    if (action && (!*action || strlen(action) > 64))
        stoa_request_field_error(req, "action", "invalid");
    stoa_page_t page;
    if (!stoa_request_page(req, STOA_PAGE_SERIAL, &page))
        return stoa_http_invalid_fields(req);
    const char *params[] = {actor, action,         target,    from,
                            to,    page.cursor_id, page.fetch};
    stoa_db_result_t *res;
    int rc =
        stoa_db_exec_fields(stoa_request_db(req), req->arena,
                            ADMIN_SQL(AUDIT_LOG), params, audit_fields, &res);
    if (rc != STOA_OK)
        return rc;
    static const stoa_list_t list = {
        audit_columns, STOA_ARRAY_LEN(audit_columns), NULL, AUDIT_COL_ID, 0};
    return stoa_http_list(req, res, &page, &list);
}
