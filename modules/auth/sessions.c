/* sessions.c - a user's live sessions: list and revoke. */
#include <string.h>

#include "auth.h"
#include "stoa/crypto.h"
#include "stoa/revoke.h"

int auth_sessions_list(stoa_request_t *req)
{
    const char *params[] = {req->principal.user_id};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena, "sessions_list", params,
                          &res);
    if (rc != STOA_OK)
        return rc;
    const char *current = req->principal.session_id;
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_key(w, "data");
    stoa_jw_array_open(w);
    for (int i = 0; i < stoa_db_rows(res); i++) {
        const char *id = stoa_db_value(res, i, 0);
        stoa_jw_object_open(w);
        stoa_jw_kv_string(w, "id", id);
        stoa_jw_kv_string(w, "created_at", stoa_db_value(res, i, 1));
        stoa_jw_kv_string(w, "last_used_at", stoa_db_value(res, i, 2));
        stoa_jw_kv_string(w, "user_agent", stoa_db_value(res, i, 3));
        stoa_jw_kv_string(w, "ip", stoa_db_value(res, i, 4));
        stoa_jw_kv_bool(w, "current", current && strcmp(current, id) == 0);
        stoa_jw_object_close(w);
    }
    stoa_jw_array_close(w);
    stoa_jw_key(w, "next_cursor");
    stoa_jw_null(w);
    stoa_jw_object_close(w);
    return stoa_http_send(req);
}

int auth_sessions_delete(stoa_request_t *req)
{
    const char *id = stoa_request_path_param(req, "id");
    if (!stoa_uuid_valid(id))
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such session");
    stoa_db_t *db = stoa_request_db(req);
    int rc = stoa_db_begin(db);
    if (rc != STOA_OK)
        return rc;
    const char *params[] = {id, req->principal.user_id, "revoked_by_user"};
    stoa_db_result_t *res;
    if ((rc = stoa_db_exec(db, req->arena, "session_revoke_one", params,
                           &res)) != STOA_OK)
        return rc;
    if (stoa_db_rows(res) == 0) {
        stoa_db_rollback(db);
        return stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such session");
    }
    char *details = stoa_arena_sprintf(req->arena, "{\"session_id\":\"%s\"}", id);
    if ((rc = stoa_request_audit(req, NULL, "session.revoked", req->principal.user_id,
                         details)) != STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
        return rc;
    stoa_revoke_session_committed(&req->conns, req->arena, id);
    return stoa_http_empty(req, 204);
}

int auth_sessions_delete_others(stoa_request_t *req)
{
    stoa_db_t *db = stoa_request_db(req);
    int rc = stoa_db_begin(db);
    if (rc != STOA_OK)
        return rc;
    stoa_db_result_t *revoked;
    if ((rc = auth_revoke_sessions(req, req->principal.user_id,
                                   req->principal.session_id,
                                   "revoked_by_user", false, &revoked)) != STOA_OK ||
        (rc = stoa_request_audit(req, NULL, "sessions.revoked_others",
                         req->principal.user_id, NULL)) != STOA_OK ||
        (rc = stoa_db_commit(db)) != STOA_OK)
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
