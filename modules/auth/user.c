/* user.c - the caller's process state, a user as JSON, the caller's row
 * and the profile copies. */
#include <string.h>

#include "auth.h"
#include "stoa/cache_keys.h"
#include "stoa/log.h"

auth_state_t *auth_state(stoa_request_t *req)
{
    return req->ctx->data;
}

void auth_write_user(stoa_jw_t *w, const stoa_db_result_t *res, int row,
                     int col)
{
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "id", stoa_db_value(res, row, col + USER_COL_ID));
    stoa_jw_kv_string(w, "email",
                      stoa_db_value(res, row, col + USER_COL_EMAIL));
    stoa_jw_kv_string(w, "name", stoa_db_value(res, row, col + USER_COL_NAME));
    stoa_jw_kv_string(w, "role", stoa_db_value(res, row, col + USER_COL_ROLE));
    const char *verified =
        stoa_db_value(res, row, col + USER_COL_EMAIL_VERIFIED);
    stoa_jw_kv_bool(w, "email_verified", verified && verified[0] == 't');
    const char *mfa = stoa_db_value(res, row, col + USER_COL_MFA_ENABLED);
    stoa_jw_kv_bool(w, "mfa_enabled", mfa && mfa[0] == 't');
    stoa_jw_kv_string(w, "created_at",
                      stoa_db_value(res, row, col + USER_COL_CREATED_AT));
    stoa_jw_key(w, "notification_prefs");
    const char *prefs =
        stoa_db_value(res, row, col + USER_COL_NOTIFICATION_PREFS);
    stoa_jw_raw(w, prefs ? prefs : "{}", prefs ? strlen(prefs) : 2);
    stoa_jw_object_close(w);
}

int auth_credentials_unchanged(stoa_request_t *req, const char *verified_phc)
{
    stoa_db_t *db = stoa_request_db(req);
    const char *user_id = req->principal.user_id;
    const char *p1[] = {user_id};
    stoa_db_result_t *res;
    int rc =
        stoa_db_exec(db, req->arena, AUTH_SQL(USER_LOCK_PASSWORD), p1, &res);
    if (rc != STOA_OK)
        return rc;
    bool same = stoa_db_rows(res) == 1 && verified_phc &&
                stoa_db_value(res, 0, 0) &&
                strcmp(stoa_db_value(res, 0, 0), verified_phc) == 0;
    if (same && req->principal.session_id) {
        const char *p2[] = {req->principal.session_id, user_id};
        if ((rc = stoa_db_exec(db, req->arena, AUTH_SQL(SESSION_LIVE), p2,
                               &res)) != STOA_OK)
            return rc;
        same = stoa_db_rows(res) == 1;
    }
    if (same)
        return STOA_OK;
    stoa_db_rollback(db);
    stoa_http_fail(req, STOA_ERR_UNAUTHENTICATED,
                   "the account's credentials changed while this request "
                   "ran; sign in again");
    return STOA_DECLINED;
}

void auth_forget_profile(stoa_request_t *req, const char *user_id)
{
    if (stoa_profile_forget(&req->conns, req->arena, user_id) != STOA_OK)
        stoa_log(STOA_LOG_WARN, "could not drop cached profile");
}

int auth_caller_user(stoa_request_t *req, stoa_db_result_t **user)
{
    const char *p[] = {req->principal.user_id};
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          AUTH_SQL(USER_BY_ID), p, user);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(*user) == 0) {
        stoa_http_fail(req, STOA_ERR_NOT_FOUND, "no such user");
        return STOA_DECLINED;
    }
    return STOA_OK;
}
