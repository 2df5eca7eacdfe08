/* users.c - the back office's accounts: the list (filters, keyset paging
 * newest first), one account's detail, and its role and status changes,
 * made by the same library call as stoactl's (stoa/accounts.h). */
#include <string.h>

#include "admin.h"
#include "stoa/accounts.h"
#include "stoa/crypto.h"
#include "stoa/format.h"

static const char *const user_statuses[] = {"active", "suspended", "deleted",
                                            NULL};

static bool listed(const char *const *values, const char *value)
{
    for (const char *const *v = values; *v; v++)
        if (strcmp(*v, value) == 0)
            return true;
    return false;
}

/* The request field behind each parameter of the list statements. */
static const char *const list_fields[] = {
    "role",   "status", "plan",  "created_from", "created_to",
    "cursor", "cursor", "limit", "email",        NULL};

static const stoa_column_t user_columns[] = {
    {"id", USER_COL_ID, STOA_COLUMN_TEXT},
    {"email", USER_COL_EMAIL, STOA_COLUMN_TEXT},
    {"name", USER_COL_NAME, STOA_COLUMN_TEXT},
    {"role", USER_COL_ROLE, STOA_COLUMN_TEXT},
    {"status", USER_COL_STATUS, STOA_COLUMN_TEXT},
    {"created_at", USER_COL_CREATED_AT, STOA_COLUMN_TEXT},
    {"email_verified_at", USER_COL_EMAIL_VERIFIED_AT, STOA_COLUMN_TEXT},
    {"plan", USER_COL_PLAN, STOA_COLUMN_TEXT},
    {"subscription_status", USER_COL_SUBSCRIPTION_STATUS, STOA_COLUMN_TEXT},
};

/* A time filter: RFC 3339 in UTC, or a date (its midnight, UTC). */
static const char *time_filter(stoa_request_t *req, const char *key)
{
    const char *v = stoa_request_query(req, key);
    if (v && !stoa_time_shape_valid(v, true))
        stoa_request_field_error(req, key, "invalid_time");
    return v;
}

int admin_users_list(stoa_request_t *req)
{
    static const char *const allowed[] = {"email", "role",         "status",
                                          "plan",  "created_from", "created_to",
                                          "limit", "cursor",       NULL};
    stoa_request_query_reject_unknown(req, allowed);
    stoa_page_t page;
    stoa_request_page(req, STOA_PAGE_KEYSET, &page);
    const char *email = stoa_request_query(req, "email");
    if (email && (!*email || strlen(email) > 254))
        stoa_request_field_error(req, "email", "invalid");
    const char *role = stoa_request_query(req, "role");
    if (role && !stoa_role_valid(role))
        stoa_request_field_error(req, "role", "unknown");
    const char *status = stoa_request_query(req, "status");
    if (status && !listed(user_statuses, status))
        stoa_request_field_error(req, "status", "unknown");
    const char *plan = stoa_request_query(req, "plan");
    if (plan && (!*plan || strlen(plan) > 64))
        stoa_request_field_error(req, "plan", "invalid");
    const char *from = time_filter(req, "created_from");
    const char *to = time_filter(req, "created_to");
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);

    const char *params[] = {role,           status,     plan,
                            from,           to,         page.cursor_ts,
                            page.cursor_id, page.fetch, email};
    stoa_db_result_t *res;
    int rc = stoa_db_exec_fields(stoa_request_db(req), req->arena,
                                 email ? ADMIN_SQL(USERS_LIST_BY_EMAIL)
                                       : ADMIN_SQL(USERS_LIST),
                                 params, list_fields, &res);
    if (rc != STOA_OK)
        return rc;
    static const stoa_list_t list = {user_columns, STOA_ARRAY_LEN(user_columns),
                                     NULL, USER_COL_CURSOR_US, USER_COL_ID};
    return stoa_http_list(req, res, &page, &list);
}

/* The detail of id as GET answers it; STOA_DECLINED (404 sent) when there
 * is no such account. */
static int answer_detail(stoa_request_t *req, const char *id, int status)
{
    const char *params[] = {id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          ADMIN_SQL(USER_DETAIL), params, &res);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such user");
    static const stoa_column_t counts[] = {
        {"sessions", USER_COL_SESSIONS, STOA_COLUMN_INTEGER},
        {"mfa_enabled", USER_COL_MFA_ENABLED, STOA_COLUMN_BOOL},
        {"api_keys", USER_COL_API_KEYS, STOA_COLUMN_INTEGER},
    };
    const char *login_at = stoa_db_value(res, 0, USER_COL_LAST_LOGIN_AT);
    stoa_jw_t *w = stoa_http_json(req, status);
    stoa_jw_object_open(w);
    stoa_http_write_columns(w, res, 0, user_columns,
                            STOA_ARRAY_LEN(user_columns));
    stoa_http_write_columns(w, res, 0, counts, STOA_ARRAY_LEN(counts));
    stoa_jw_key(w, "last_login");
    if (login_at) {
        stoa_jw_object_open(w);
        stoa_jw_kv_string(w, "at", login_at);
        stoa_jw_kv_string(w, "ip",
                          stoa_db_value(res, 0, USER_COL_LAST_LOGIN_IP));
        stoa_jw_object_close(w);
    } else {
        stoa_jw_null(w);
    }
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}

/* A malformed id is an id no account has: 404, as everywhere in the
 * API. */
int admin_users_get(stoa_request_t *req)
{
    const char *id = stoa_request_path_param(req, "id");
    if (!stoa_uuid_valid(id))
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such user");
    return answer_detail(req, id, 200);
}

/* role and status, either or both, in one change. An admin may change
 * their own account like any other: the rule of the last active admin
 * covers demoting or suspending oneself, and doing so ends one's own
 * sessions, this request's token included. */
int admin_users_patch(stoa_request_t *req)
{
    /* The path is shared with GET, which finance may read: the edge
     * admits both roles, and only an admin changes an account. */
    if (!stoa_principal_has_role(&req->principal, "admin"))
        return stoa_http_fail(req, STOA_ERR_FORBIDDEN,
                              "only an admin changes an account");
    const char *id = stoa_request_path_param(req, "id");
    const stoa_json_t *body;
    if (stoa_request_json_body(req, &body) != STOA_OK)
        return STOA_DECLINED;
    static const char *const allowed[] = {"role", "status", NULL};
    stoa_field_reject_unknown(req, body, allowed);
    const char *role =
        stoa_field_string(req, body, "role", STOA_FIELD_OPTIONAL, 1, 32);
    const char *status =
        stoa_field_string(req, body, "status", STOA_FIELD_OPTIONAL, 1, 32);
    if (role && !stoa_role_valid(role))
        stoa_request_field_error(req, "role", "unknown");
    /* An erasure is not a status change (DELETE /v1/admin/users/{id}). */
    if (status && strcmp(status, "active") != 0 &&
        strcmp(status, "suspended") != 0)
        stoa_request_field_error(req, "status", "unknown");
    if (stoa_request_has_field_errors(req))
        return stoa_http_invalid_fields(req);
    if (!stoa_uuid_valid(id))
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such user");

    stoa_account_change_t change = {
        .user_id = id, .role = role, .status = status};
    stoa_account_result_t result;
    stoa_actor_t actor = stoa_request_actor(req, NULL);
    stoa_request_db(req); /* binds the request's connections */
    int rc =
        stoa_account_change(&req->conns, req->arena, &actor, &change, &result);
    if (rc == STOA_DECLINED &&
        result.refusal == STOA_ACCOUNT_REFUSED_LAST_ADMIN)
        return stoa_http_fail(req, STOA_ERR_LAST_ADMIN, NULL);
    if (rc == STOA_DECLINED)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such user");
    if (rc != STOA_OK)
        return rc;
    return answer_detail(req, id, 200);
}
