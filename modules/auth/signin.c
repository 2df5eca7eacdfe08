/* signin.c - starting a session: the user re-read under lock, the session
 * row, the token answer. */
#include <string.h>

#include "auth.h"

int auth_user_for_session(stoa_request_t *req, const char *user_id,
                          const char *verified_hash, stoa_db_result_t **user)
{
    const char *p[] = {user_id};
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          AUTH_SQL(USER_FOR_SESSION), p, user);
    if (rc != STOA_OK)
        return rc;
    if (stoa_db_rows(*user) != 1 ||
        strcmp(stoa_db_value(*user, 0, USER_COL_STATUS), "active") != 0)
        return stoa_http_fail(req, STOA_ERR_ACCOUNT_SUSPENDED,
                              "this account is not active");
    const char *now_hash = stoa_db_value(*user, 0, USER_COL_PASSWORD_HASH);
    if (verified_hash && (!now_hash || strcmp(now_hash, verified_hash) != 0))
        return stoa_http_fail(req, STOA_ERR_INVALID_CREDENTIALS,
                              "email or password is wrong");
    return STOA_OK;
}

int auth_start_session(stoa_request_t *req, const stoa_db_result_t *user,
                       auth_tokens_t *tokens)
{
    const stoa_conf_t *conf = &req->ctx->conf;
    const char *user_id = stoa_db_value(user, 0, USER_COL_ID);
    const char *role = stoa_db_value(user, 0, USER_COL_ROLE);
    char ttl[24];
    snprintf(ttl, sizeof(ttl), "%ld", conf->refresh_token_ttl);
    const char *p1[] = {user_id, ttl, req->user_agent, req->remote_addr};
    stoa_db_result_t *res;
    int rc = stoa_db_exec(stoa_request_db(req), req->arena,
                          AUTH_SQL(SESSION_INSERT), p1, &res);
    if (rc != STOA_OK)
        return rc;
    const char *session_id = stoa_db_value(res, 0, SESSION_INSERT_COL_ID);
    char *refresh, *hash;
    auth_new_token(req, &refresh, &hash);
    const char *p2[] = {hash, session_id, ttl};
    rc = stoa_db_exec(stoa_request_db(req), req->arena,
                      AUTH_SQL(REFRESH_INSERT), p2, NULL);
    if (rc != STOA_OK)
        return rc;
    tokens->refresh = refresh;
    return auth_access_token(req, user_id, role, session_id, &tokens->access);
}

/* The token answer of login, refresh and MFA completion. user may be NULL
 * (refresh answers carry no user). */
void auth_write_tokens(stoa_request_t *req, const char *access,
                       const char *refresh, const stoa_db_result_t *user)
{
    stoa_jw_t *w = stoa_http_json(req, 200);
    stoa_jw_object_open(w);
    stoa_jw_kv_string(w, "access_token", access);
    stoa_jw_kv_string(w, "token_type", "Bearer");
    stoa_jw_kv_integer(w, "expires_in", req->ctx->conf.access_token_ttl);
    stoa_jw_kv_string(w, "refresh_token", refresh);
    if (user) {
        stoa_jw_key(w, "user");
        auth_write_user(w, user, 0, 0);
    }
    stoa_jw_object_close(w);
    stoa_http_send(req);
}
