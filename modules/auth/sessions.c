/* sessions.c - a user's live sessions: list and revoke. */
#include <string.h>

#include "auth.h"
#include "stoa/crypto.h"
#include "stoa/revoke.h"

static const stoa_column_t session_columns[] = {
    {"id", SESSIONS_COL_ID, STOA_COLUMN_TEXT},
    {"created_at", SESSIONS_COL_CREATED_AT, STOA_COLUMN_TEXT},
    {"last_used_at", SESSIONS_COL_LAST_USED_AT, STOA_COLUMN_TEXT},
    {"user_agent", SESSIONS_COL_USER_AGENT, STOA_COLUMN_TEXT},
    {"ip", SESSIONS_COL_IP, STOA_COLUMN_TEXT},
};

/* "current": the session of the token that asks. */
static void session_current(stoa_request_t *req, stoa_jw_t *w,
                            const stoa_db_result_t *res, int row)
{
    const char *current = req->principal.session_id;
    const char *id = stoa_db_value(res, row, SESSIONS_COL_ID);
    stoa_jw_kv_bool(w, "current", current && strcmp(current, id) == 0);
}

int auth_sessions_list(stoa_request_t *req)
{
    const char *params[] = {req->principal.user_id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          AUTH_SQL(SESSIONS_LIST), params, &res);
    if (rc != STOA_OK)
        return rc;
    /* At most the newest 100 (the statement's LIMIT): not paged. */
    static const stoa_list_t list = {session_columns,
                                     STOA_ARRAY_LEN(session_columns),
                                     session_current, 0, 0};
    return stoa_http_list(req, res, NULL, &list);
}

int auth_sessions_delete(stoa_request_t *req)
{
    const char *id = stoa_request_path_param(req, "id");
    if (!stoa_uuid_valid(id))
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such session");
    const char *params[] = {id, req->principal.user_id, "revoked_by_user"};
    int rc =
        stoa_request_begin(req, AUTH_SQL(SESSION_REVOKE_ONE), params, NULL);
    if (rc == STOA_DECLINED)
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such session");
    char *details = stoa_json_pair(req->arena, "session_id", id);
    if (rc != STOA_OK ||
        (rc = stoa_request_commit(req, "session.revoked",
                                  req->principal.user_id, details)) != STOA_OK)
        return rc;
    stoa_revoke_session_committed(&req->conns, req->arena, id);
    return stoa_http_empty(req, 204);
}

int auth_sessions_delete_others(stoa_request_t *req)
{
    int rc = stoa_request_begin(req, NULL, NULL, NULL);
    stoa_db_result_t *revoked;
    if (rc != STOA_OK ||
        (rc = auth_revoke_sessions(req, req->principal.user_id,
                                   req->principal.session_id, "revoked_by_user",
                                   false, &revoked)) != STOA_OK ||
        (rc = stoa_request_commit(req, "sessions.revoked_others",
                                  req->principal.user_id, NULL)) != STOA_OK)
        return rc;
    auth_mark_revoked(req, revoked);
    return stoa_http_empty(req, 204);
}

int auth_revoke_sessions(stoa_request_t *req, const char *user_id,
                         const char *keep_session_id, const char *reason,
                         bool with_keys, stoa_db_result_t **revoked)
{
    return stoa_revoke_sessions(stoa_request_db(req), req->arena, user_id,
                                keep_session_id, reason, with_keys, revoked);
}

void auth_mark_revoked(stoa_request_t *req, const stoa_db_result_t *revoked)
{
    stoa_revoke_committed(&req->conns, req->arena, revoked);
}
